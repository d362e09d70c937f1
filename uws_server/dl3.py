"""What the DL3 data store offers: its observation ids and files (forms, the catalogue).

The store is written by the CTA job scripts (``scripts/cta/dl3_store.py``: GADF files
plus ``obs-index.fits.gz``); the service only reads its index, cached by modification
time so that a form costs one ``stat``.
"""

from __future__ import annotations

import threading
from pathlib import Path

OBS_INDEX = "obs-index.fits.gz"
# A job parameter with this name takes observation ids of the store (the seed's
# gammapy_maps / gammapy_spectra convention); the web form offers them as choices.
OBS_IDS_PARAMETER = "obs_ids"

_lock = threading.Lock()
_cache: dict[Path, tuple[float, list[int]]] = {}


def observation_ids(store: Path) -> list[int]:
    """The obs_ids in the store's observation index, sorted; [] if there is none."""
    index = Path(store) / OBS_INDEX
    try:
        mtime = index.stat().st_mtime
    except OSError:
        return []
    with _lock:
        hit = _cache.get(index)
        if hit is not None and hit[0] == mtime:
            return list(hit[1])
    from astropy.io import fits  # imported only when a store exists

    try:
        with fits.open(index, memmap=False) as hdus:
            ids = sorted({int(i) for i in hdus[1].data["OBS_ID"]})
    except (OSError, KeyError, IndexError, ValueError, TypeError):
        return []
    with _lock:
        _cache[index] = (mtime, ids)
    return ids


HDU_INDEX = "hdu-index.fits.gz"
_files_cache: dict[Path, tuple[float, dict[int, Path]]] = {}


def observation_files(store: Path, strict: bool = False) -> dict[int, Path]:
    """obs_id -> the file holding its EVENTS, from the store's HDU index; {} if none.

    Only files inside the store are returned (the index is data: a FILE_DIR of
    ``../..`` must not make the service serve a file from elsewhere). ``strict``: an
    index that exists but cannot be read raises instead of reading as empty (the
    catalogue must not drop every observation because of one failed read).
    """
    root = Path(store).resolve()
    index = root / HDU_INDEX
    try:
        mtime = index.stat().st_mtime
    except OSError:
        return {}
    with _lock:
        hit = _files_cache.get(index)
        if hit is not None and hit[0] == mtime:
            return dict(hit[1])
    from astropy.io import fits

    files: dict[int, Path] = {}
    try:
        with fits.open(index, memmap=False) as hdus:
            data = hdus[1].data
            for obs_id, hdu_type, file_dir, file_name in zip(
                data["OBS_ID"], data["HDU_TYPE"], data["FILE_DIR"], data["FILE_NAME"], strict=True
            ):
                if str(hdu_type).strip().lower() != "events":
                    continue
                path = (root / str(file_dir).strip() / str(file_name).strip()).resolve()
                if path.is_relative_to(root) and path.is_file():
                    files[int(obs_id)] = path
    except (OSError, KeyError, IndexError, ValueError, TypeError):
        if strict:
            raise
        return {}
    with _lock:
        _files_cache[index] = (mtime, files)
    return dict(files)
