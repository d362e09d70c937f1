"""Quick-look PNGs of FITS results, made when first asked for and cached.

A FITS result on the job page gets a picture: an image or a cube (summed over its extra
axes) as an image, an event list as a counts image of its sky or detector coordinates.
The PNG is drawn in a child process (this file run as a script: ``SRC DST``)
with a time limit and an address-space limit, so a huge or hostile file costs at most
that and never the server's memory; a file that cannot be drawn gives a message (the
child's last line), never a 500. PNGs are cached outside the job's results (under the
provenance directory of the job, which goes when the job goes), keyed by the result's
name, size and modification time, so a result rewritten gets a new picture.
"""

from __future__ import annotations

import hashlib
import os
import resource
import subprocess
import sys
from pathlib import Path

QUICKLOOK_TIMEOUT = 60.0  # seconds for one picture (astropy + matplotlib import included)
QUICKLOOK_MEMORY = 1536 * 1024 * 1024  # bytes of address space for the child
MAX_PIXELS = 800  # the longer side of the picture's data, after binning
MAX_EVENTS = 5_000_000  # rows of an event list read, at most
FITS_SUFFIXES = (".fits", ".fit", ".fts", ".fits.gz", ".fit.gz")
FITS_TYPES = {"application/fits", "image/fits", "application/x-fits"}


class QuickLookError(Exception):
    """The file could not be drawn; the message says why (shown to the user)."""


def is_fits(content_type: str, path: str) -> bool:
    media = (content_type or "").split(";")[0].strip().lower()
    return media in FITS_TYPES or path.lower().endswith(FITS_SUFFIXES)


def cache_path(src: Path, cache_dir: Path, name: str) -> Path:
    st = src.stat()
    key = hashlib.sha256(f"{name}\0{st.st_size}\0{st.st_mtime_ns}".encode()).hexdigest()[:20]
    return cache_dir / f"{key}.png"


def _limit_self() -> None:
    """Run by the child first thing (not as a preexec_fn, which is unsafe in a threaded
    server): its address space is capped and it yields the CPU to jobs and requests."""
    resource.setrlimit(resource.RLIMIT_AS, (QUICKLOOK_MEMORY, QUICKLOOK_MEMORY))
    os.nice(10)


def quicklook(src: Path, cache_dir: Path, name: str) -> Path:
    """The cached PNG of FITS file ``src`` (drawn now if needed); QuickLookError if not."""
    target = cache_path(src, cache_dir, name)
    if target.is_file():
        return target
    failed = target.with_suffix(".err")
    if failed.is_file():
        raise QuickLookError(failed.read_text("utf-8", "replace"))
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(f".{os.getpid()}.tmp.png")
    try:
        proc = subprocess.run(
            [sys.executable, __file__, str(src), str(tmp)],  # by path: no service import
            capture_output=True,
            timeout=QUICKLOOK_TIMEOUT,
            check=False,
            env={**os.environ, "MPLBACKEND": "Agg"},
        )
    except subprocess.TimeoutExpired:
        tmp.unlink(missing_ok=True)
        raise QuickLookError(f"the quick-look took over {QUICKLOOK_TIMEOUT:.0f} s") from None
    if proc.returncode != 0 or not tmp.is_file():
        tmp.unlink(missing_ok=True)
        lines = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        reason = lines[-1] if lines else f"exit status {proc.returncode}"
        if proc.returncode < 0 or "MemoryError" in reason:
            reason = "the file is too large to draw within the quick-look's memory"
        message = f"no quick-look: {reason[:300]}"
        failed.write_text(message, "utf-8")
        raise QuickLookError(message)
    os.replace(tmp, target)
    return target


# --------------------------------------------------------------- the child process
def _binned(data, max_pixels: int = MAX_PIXELS):  # type: ignore[no-untyped-def]
    """Sum blocks of pixels so the longer side is at most ``max_pixels``."""
    import numpy as np

    step = max(1, -(-max(data.shape) // max_pixels))
    if step == 1:
        return data
    h, w = (data.shape[0] // step) * step, (data.shape[1] // step) * step
    return np.nansum(data[:h, :w].reshape(h // step, step, w // step, step), axis=(1, 3))


def _image_of(hdul):  # type: ignore[no-untyped-def]
    """(2-D array, title, axis names) from the first image or event list found."""
    import numpy as np

    for hdu in hdul:
        shape = getattr(hdu, "shape", None) or ()
        if hdu.is_image and len(shape) >= 2:
            data = np.asarray(hdu.data, dtype=float)
            while data.ndim > 2:
                data = np.nansum(data, axis=0)  # a cube: summed over its extra axes
            kind = "cube (summed)" if len(shape) > 2 else "image"
            return _binned(data), f"{hdu.name or 'PRIMARY'}: {kind} {shape}", ("x", "y")
    for hdu in hdul:
        if hdu.is_image or not hasattr(hdu, "columns"):
            continue
        names = {c.name.upper(): c.name for c in hdu.columns}
        for x, y in (("RA", "DEC"), ("GLON", "GLAT"), ("X", "Y"), ("DETX", "DETY")):
            if x in names and y in names:
                rows = min(hdu.header.get("NAXIS2", 0), MAX_EVENTS)
                xs = np.asarray(hdu.data[names[x]][:rows], dtype=float)
                ys = np.asarray(hdu.data[names[y]][:rows], dtype=float)
                ok = np.isfinite(xs) & np.isfinite(ys)
                if not ok.any():
                    raise ValueError(f"{hdu.name}: no finite {x}/{y} values")
                counts, xe, ye = np.histogram2d(xs[ok], ys[ok], bins=200)
                title = f"{hdu.name or 'EVENTS'}: counts of {int(ok.sum())} events"
                return counts.T, title, (x, y), (xe[0], xe[-1], ye[0], ye[-1])
    raise ValueError("no image, cube or event list (RA/DEC, GLON/GLAT, X/Y) in the file")


def draw(src: str, dst: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from astropy.io import fits

    with fits.open(src, memmap=True, lazy_load_hdus=True) as hdul:
        found = _image_of(hdul)
    data, title, axes = found[0], found[1], found[2]
    extent = found[3] if len(found) > 3 else None
    finite = data[np.isfinite(data)]
    if finite.size == 0:
        raise ValueError("the image holds no finite value")
    lo, hi = np.percentile(finite, [1, 99.5])
    fig, ax = plt.subplots(figsize=(6, 5), dpi=100)
    im = ax.imshow(
        data,
        origin="lower",
        cmap="magma",
        vmin=lo,
        vmax=hi if hi > lo else lo + 1,
        extent=extent,
        aspect="auto" if extent is not None else "equal",
        interpolation="nearest",
    )
    if extent is not None and axes[0] in ("RA", "GLON"):
        ax.invert_xaxis()
    fig.colorbar(im, ax=ax, shrink=0.85)
    ax.set_xlabel(axes[0])
    ax.set_ylabel(axes[1])
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(dst, format="png")
    plt.close(fig)


if __name__ == "__main__":  # pragma: no cover - exercised through quicklook()
    try:
        _limit_self()
        draw(sys.argv[1], sys.argv[2])
    except Exception as exc:  # noqa: BLE001 - the message is the product
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
        sys.exit(2)
