"""The files behind catalogue rows: the data set itself, its quick-look, its IRFs.

A row's file is served only after the catalogue said the caller may see the row, and
only if its real path is inside the DL3 store (store rows) or inside the job's
directory (products): the path column is data, and data never decides what the
service reads. Derived files (PNG previews, IRF extracts) are made once and cached
under ``<var_dir>/vo_cache`` by data set and file identity (size, mtime).
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from pathlib import Path
from typing import Any

from uws_server.common import real_path_within
from uws_server.config import Settings

log = logging.getLogger("uws_server.vo")

_make_lock = threading.Lock()


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def row_file(settings: Settings, row: dict[str, Any]) -> Path | None:
    """The row's file if it exists and lies where such files may lie; else None."""
    path = row.get("file_path")
    if not path:
        return None
    if row.get("job_id"):
        root = Path(settings.jobs_dir) / str(row["job_id"])
    else:
        root = Path(settings.dl3_store)
    real = real_path_within(path, root)
    if real is None or not os.path.isfile(real):
        return None
    return Path(real)


def _cache_path(settings: Settings, source: Path, kind: str, suffix: str) -> Path:
    st = source.stat()
    key = hashlib.sha256(f"{source}|{st.st_size}|{st.st_mtime_ns}|{kind}".encode()).hexdigest()
    return Path(settings.var_dir) / "vo_cache" / f"{key[:32]}.{kind}{suffix}"


def _make(target: Path, build: Any) -> Path:
    """Build ``target`` once (atomically: a reader never sees half a file)."""
    if target.is_file():
        return target
    with _make_lock:
        if target.is_file():
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".tmp-{os.getpid()}-{target.name}")
        try:
            build(tmp)
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
    return target


def events_preview(settings: Settings, source: Path, title: str) -> Path:
    """A counts image (PNG) of a DL3 event list around its pointing."""

    def build(tmp: Path) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import numpy as np
        from astropy.io import fits

        with fits.open(source, memmap=False) as hdus:
            events = next(
                h for h in hdus[1:] if str(h.header.get("HDUCLAS1", h.name)).upper() == "EVENTS"
            )
            ra = np.asarray(events.data["RA"], dtype=float)
            dec = np.asarray(events.data["DEC"], dtype=float)
            ra0, dec0 = float(events.header["RA_PNT"]), float(events.header["DEC_PNT"])
        dra = ((ra - ra0 + 180.0) % 360.0 - 180.0) * np.cos(np.radians(dec0))
        ddec = dec - dec0
        fig, ax = plt.subplots(figsize=(4.5, 4), dpi=80)
        ax.hist2d(dra, ddec, bins=80, range=[[-3, 3], [-3, 3]], cmap="viridis")
        ax.set_xlabel("ΔRA cos(Dec) [deg]")
        ax.set_ylabel("ΔDec [deg]")
        ax.set_title(title, fontsize=9)
        fig.tight_layout()
        fig.savefig(tmp, format="png")
        plt.close(fig)

    return _make(_cache_path(settings, source, "preview", ".png"), build)


def image_preview(settings: Settings, source: Path, title: str) -> Path:
    """A PNG of a FITS sky map (first image HDU, summed over any third axis)."""

    def build(tmp: Path) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import numpy as np
        from astropy.io import fits

        with fits.open(source, memmap=False) as hdus:
            hdu = next(h for h in hdus if getattr(h, "data", None) is not None and h.data.ndim >= 2)
            data = np.asarray(hdu.data, dtype=float)
        while data.ndim > 2:
            data = np.nansum(data, axis=0)
        fig, ax = plt.subplots(figsize=(4.5, 4), dpi=80)
        im = ax.imshow(data, origin="lower", cmap="magma")
        fig.colorbar(im, ax=ax)
        ax.set_title(title, fontsize=9)
        fig.tight_layout()
        fig.savefig(tmp, format="png")
        plt.close(fig)

    return _make(_cache_path(settings, source, "preview", ".png"), build)


def irf_extract(settings: Settings, source: Path) -> Path:
    """The IRF HDUs (effective area, energy dispersion, PSF, background) of a DL3
    observation file as a FITS file of their own (the #auxiliary link)."""

    def build(tmp: Path) -> None:
        from astropy.io import fits

        with fits.open(source, memmap=False) as hdus:
            irfs = [
                h.copy()
                for h in hdus[1:]
                if str(h.header.get("HDUCLAS1", "")).upper() == "RESPONSE"
            ]
            if not irfs:
                raise FileNotFoundError("no IRF HDU in the observation file")
            fits.HDUList([fits.PrimaryHDU(), *irfs]).writeto(tmp, output_verify="silentfix")

    return _make(_cache_path(settings, source, "irf", ".fits"), build)
