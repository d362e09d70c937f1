"""The job-side contract: what a job's script may tell the service, in one module.

A job script (any interpreter: the service's own or a science venv) imports this
module to read its parameters and output names and to report back through files of
its directory, which the service reads when the job ends with the *same* module's
readers, so that writer and reader cannot drift apart:

* parameters: ``$UWS_PARAMETERS_FILE`` (``parameters.json``), :func:`parameters`;
* outputs: each generated entity's file name is exported under the entity's name,
  :func:`output_path`;
* used inputs: ``.uws/used.json``, a list of ``{"path", "role", "sha256"}``
  (:func:`record_used` / :func:`read_used`);
* progress: JSON ``{"fraction", "message"}`` written atomically (temporary file, then
  rename) to ``$UWS_PROGRESS_FILE`` (:func:`progress`; the protocol of
  :mod:`workers.progress`);
* context: ``.uws/context.json``, software versions (:func:`write_context`);
* failure: ``.uws/error.txt``, one line, the job's error summary (:func:`fail` /
  :func:`read_error`);
* sub-activities: ``.uws/activities.json``, one record per tool run inside the job
  (:func:`activity`), plus the provenance logs ctapipe tools write, merged by the CTA
  scripts into ``.uws/ctapipe_provenance.json``; :func:`read_activities` reads both
  into one normalised form (see :class:`Activity`);
* provenance in products: :func:`stamp` writes the producing job's URL, activity id,
  entity id and a ProvSAP URL into a FITS primary header (standard library only) or an
  HDF5 file's root attributes (with h5py when the interpreter has it).

How a script finds this module: the runner exports ``$UWS_LIB``, the directory that
holds the ``workers`` package, so any interpreter can do::

    import os, sys
    sys.path.insert(0, os.environ["UWS_LIB"])
    from workers import jobside

Standard library only, like all of ``workers/``; nothing here imports ``uws_server``.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from datetime import UTC, datetime

from workers.jobdir import (
    CONTEXT_FILE,
    PARAMETERS_FILE,
    SPEC_FILE,
    UWS_DIR,
    atomic_write,
    read_private,
)

TYPE_CHECKING = False  # annotations only (see workers.jobdir)
if TYPE_CHECKING:
    from collections.abc import Iterator

USED_FILE = f"{UWS_DIR}/used.json"
ERROR_FILE = f"{UWS_DIR}/error.txt"
ACTIVITIES_FILE = f"{UWS_DIR}/activities.json"
CTAPIPE_PROVENANCE_FILE = f"{UWS_DIR}/ctapipe_provenance.json"
# Entity ids a script stamped into its products, {path: entity id}: the service gives
# the result that id (if it is well formed and new), so the id in the file is the id
# of its provenance entity.
STAMPED_FILE = f"{UWS_DIR}/stamped.json"
PROGRESS_ENV = "UWS_PROGRESS_FILE"
ENTITY_PREFIX = "ent_"

_MAX_READ = 8 << 20  # what the service reads of a script's file
_MAX_ACTIVITIES = 500
_MAX_FILES = 2000


def _token(n: int) -> str:
    import secrets  # imported when used: the runner imports this module at every job end

    return secrets.token_hex(n)


def _token_urlsafe(n: int) -> str:
    import secrets

    return secrets.token_urlsafe(n)


def job_dir() -> str:
    """The job's directory: ``$UWS_JOB_DIR``, else the working directory."""
    return os.environ.get("UWS_JOB_DIR") or os.getcwd()


def _path(name: str, root: str | None = None) -> str:
    return os.path.join(root or job_dir(), name)


def _write_json(name: str, data: object, root: str | None = None) -> None:
    path = _path(name, root)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    atomic_write(path, (json.dumps(data, indent=1, default=str) + "\n").encode())


def _read_json(name: str, root: str | None = None) -> object:
    """A JSON file the script wrote, or None (missing, a link, too large, not JSON)."""
    raw = read_private(_path(name, root), _MAX_READ)
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return None


def sha256_of(path: str) -> str:
    """The file's SHA-256 (hex), as the service records it."""
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _shown(path: str) -> str:
    """``path`` relative to the job directory when inside it, else absolute."""
    full = os.path.realpath(path)
    root = os.path.realpath(job_dir())
    if os.path.commonpath([full, root]) == root:
        return os.path.relpath(full, root)
    return full


def now() -> str:
    """UTC now, ISO 8601 with an offset (what the records carry)."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


# --- parameters and outputs ----------------------------------------------------------


def parameters() -> dict[str, str]:
    """The job's parameters (``$UWS_PARAMETERS_FILE``) as submitted, values as strings."""
    path = os.environ.get("UWS_PARAMETERS_FILE") or _path(PARAMETERS_FILE)
    with open(path) as f:
        data = json.load(f)
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def output_path(entity: str, default: str) -> str:
    """A generated entity's file name: the name the service exported, else ``default``.

    Refuses a name that leaves the job directory (the service would refuse the result).
    """
    name = os.environ.get(entity) or default
    if os.path.isabs(name) or ".." in name.split("/"):
        raise ValueError(f"output name for '{entity}' must be relative to the job dir: {name}")
    parent = os.path.dirname(name)
    if parent:
        os.makedirs(parent, exist_ok=True)
    return name


# --- used inputs ---------------------------------------------------------------------


def record_used(path: str, role: str = "input", **extra: object) -> dict[str, object]:
    """Add a file the job read to ``.uws/used.json`` (once per path and role).

    The service links it to the stored entity with the same SHA-256, which is how a
    file another job generated becomes this job's used entity.
    """
    entries = read_used()
    entry: dict[str, object] = {"path": _shown(path), "role": role, "sha256": sha256_of(path)}
    entry.update(extra)
    if not any(e.get("path") == entry["path"] and e.get("role") == role for e in entries):
        entries.append(entry)
        _write_json(USED_FILE, entries)
    return entry


def read_used(root: str | None = None) -> list[dict[str, object]]:
    """The inputs a script reported (entries without a string ``path`` are dropped)."""
    data = _read_json(USED_FILE, root)
    if not isinstance(data, list):
        return []
    return [e for e in data[:10000] if isinstance(e, dict) and isinstance(e.get("path"), str)]


# --- progress, context, failure ------------------------------------------------------


def progress(fraction: float | None, message: str = "") -> None:
    """Report progress: ``{"fraction", "message"}`` to ``$UWS_PROGRESS_FILE``, atomically.

    Does nothing when the job runs outside the service (no variable): a script can
    report progress unconditionally.
    """
    target = os.environ.get(PROGRESS_ENV)
    if not target:
        return
    record = {"fraction": None if fraction is None else float(fraction), "message": message}
    atomic_write(target, json.dumps(record).encode())


def write_context(versions: dict[str, object]) -> None:
    """Merge software versions into ``.uws/context.json`` (``$UWS_CONTEXT_FILE``).

    The service shows them as the job's context (``uwsp:package``) in its provenance.
    """
    target = os.environ.get("UWS_CONTEXT_FILE") or _path(CONTEXT_FILE)
    current: dict[str, object] = {}
    raw = read_private(target, _MAX_READ)
    if raw:
        with contextlib.suppress(ValueError):
            loaded = json.loads(raw)
            if isinstance(loaded, dict):
                current = loaded
    current.update({str(k): str(v) for k, v in versions.items()})
    os.makedirs(os.path.dirname(target), exist_ok=True)
    atomic_write(target, (json.dumps(current, indent=2, sort_keys=True) + "\n").encode())


def package_versions(names: list[str] | tuple[str, ...]) -> dict[str, str]:
    """Installed versions of the named distributions (absent ones are left out)."""
    from importlib import metadata

    found = {}
    for name in names:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found


def write_error(message: str) -> str:
    """Write the job's one-line error summary to ``.uws/error.txt``; returns the line."""
    line = " ".join(str(message).split()) or "job failed"
    path = _path(ERROR_FILE)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    atomic_write(path, (line + "\n").encode())
    return line


def fail(message: str, code: int = 1) -> None:
    """Report a failure the way the service expects (``.uws/error.txt``), exit ``code``."""
    line = write_error(message)
    print(f"ERROR: {line}", file=sys.stderr, flush=True)
    sys.exit(code)


def read_error(root: str, limit: int = 4000) -> str | None:
    """The error summary a script wrote, or None."""
    raw = read_private(_path(ERROR_FILE, root), limit)
    text = raw.decode(errors="replace").strip() if raw else ""
    return text or None


# --- sub-activities ------------------------------------------------------------------


class Activity:
    """One tool run inside a job, as the job records it for provenance.

    The normalised record (what :func:`read_activities` returns for both sources):
    ``{"id", "name", "start", "stop", "status", "config": {name: value},
    "used": [{"path", "role", "sha256"}], "generated": [...],
    "system": {"python", "host", "executable", "packages": {name: version}}}``.
    """

    def __init__(self, name: str, config: dict[str, object] | None = None) -> None:
        self.record: dict[str, object] = {
            "id": _token(8),
            "name": name,
            "start": now(),
            "stop": None,
            "status": "running",
            "config": {str(k): _flat(v) for k, v in (config or {}).items()},
            "used": [],
            "generated": [],
            "system": system_context(),
        }

    def _file(self, kind: str, path: str, role: str) -> None:
        files = self.record[kind]
        assert isinstance(files, list)
        files.append({"path": _shown(path), "role": role, "sha256": sha256_of(path)})

    def used(self, path: str, role: str = "input") -> None:
        """The step read ``path`` (hashed now: the job's entity with that SHA-256)."""
        self._file("used", path, role)

    def generated(self, path: str, role: str = "output") -> None:
        """The step wrote ``path`` (hash it after the file is complete)."""
        self._file("generated", path, role)

    def configure(self, **config: object) -> None:
        """More configuration, known only once the step runs."""
        cfg = self.record["config"]
        assert isinstance(cfg, dict)
        cfg.update({k: _flat(v) for k, v in config.items()})


def _flat(value: object) -> str:
    """A configuration value as text (a nested value as compact JSON)."""
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, default=str, separators=(",", ":"))
    except (TypeError, ValueError):
        return str(value)


def system_context(packages: tuple[str, ...] = ()) -> dict[str, object]:
    """Python version, host and executable, plus the named packages' versions."""
    return {
        "python": sys.version.split()[0],
        "host": os.uname().nodename,
        "executable": sys.executable,
        "packages": package_versions(packages),
    }


@contextlib.contextmanager
def activity(
    name: str, config: dict[str, object] | None = None, packages: tuple[str, ...] = ()
) -> Iterator[Activity]:
    """Record a step of the job (a gammapy fit, a pyirf computation...) as a sub-activity.

    ::

        with jobside.activity("gammapy-spectrum-fit", config={...}, packages=("gammapy",)) as act:
            act.used(path)
            ...
            act.generated(out)

    The record is appended to ``.uws/activities.json`` when the block ends, with status
    ``completed`` or ``error`` (the exception goes on).
    """
    act = Activity(name, config)
    system = act.record["system"]
    assert isinstance(system, dict)
    system["packages"] = package_versions(packages)
    try:
        yield act
        act.record["status"] = "completed"
    except BaseException:
        act.record["status"] = "error"
        raise
    finally:
        act.record["stop"] = now()
        records = _read_json(ACTIVITIES_FILE)
        records = records if isinstance(records, list) else []
        records.append(act.record)
        _write_json(ACTIVITIES_FILE, records)


def _from_ctapipe(entry: dict[str, object]) -> dict[str, object] | None:
    """A ctapipe provenance-log activity in the normalised form (None if unusable)."""
    name = entry.get("activity_name")
    if not isinstance(name, str):
        return None

    def files(kind: str) -> list[dict[str, object]]:
        out = []
        items = entry.get(kind)
        for f in items if isinstance(items, list) else []:
            if isinstance(f, dict) and isinstance(f.get("url"), str):
                path = f["url"].removeprefix("file://")
                out.append({"path": path, "role": str(f.get("role") or kind)})
        return out

    def stamp(key: str) -> str | None:
        value = entry.get(key)
        t = value.get("time_utc") if isinstance(value, dict) else None
        return t + "Z" if isinstance(t, str) and "+" not in t and not t.endswith("Z") else t

    system = entry.get("system") if isinstance(entry.get("system"), dict) else {}
    assert isinstance(system, dict)
    python = system.get("python") if isinstance(system.get("python"), dict) else {}
    assert isinstance(python, dict)
    platform = system.get("platform") if isinstance(system.get("platform"), dict) else {}
    assert isinstance(platform, dict)
    packages: dict[str, str] = {}
    if isinstance(system.get("ctapipe_version"), str):
        packages["ctapipe"] = system["ctapipe_version"]
    wanted = {"numpy", "astropy", "scipy", "tables", "h5py", "scikit-learn", "pyirf", "gammapy"}
    for p in python.get("packages") or []:
        if isinstance(p, dict) and str(p.get("name", "")).lower() in wanted:
            packages[str(p["name"]).lower()] = str(p.get("version"))
    config = entry.get("config")
    flat: dict[str, str] = {}
    if isinstance(config, dict):
        _flatten(config, "", flat)
    version = python.get("version")
    return {
        "id": str(entry.get("activity_uuid") or _token(8)),
        "name": name,
        "start": stamp("start"),
        "stop": stamp("stop"),
        "status": str(entry.get("status") or ""),
        "config": flat,
        "used": files("input"),
        "generated": files("output"),
        "system": {
            "python": ".".join(map(str, version)) if isinstance(version, list) else None,
            "host": platform.get("node"),
            "executable": system.get("executable"),
            "packages": packages,
        },
    }


def _flatten(config: dict[str, object], prefix: str, out: dict[str, str]) -> None:
    """Nested configuration as dotted names: ``{"Tool": {"x": 1}}`` -> ``{"Tool.x": "1"}``."""
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            _flatten(value, f"{name}.", out)
        elif len(out) < 400:
            out[name] = _flat(value)


def read_activities(root: str) -> list[dict[str, object]]:
    """A job's sub-activities, normalised: the job-side module's, then ctapipe's logs.

    The service calls this when the job has ended; whatever is malformed is skipped
    (the files are the script's word and never fail the job).
    """
    found: list[dict[str, object]] = []
    own = _read_json(ACTIVITIES_FILE, root)
    for entry in own if isinstance(own, list) else []:
        if isinstance(entry, dict) and isinstance(entry.get("name"), str):
            found.append(entry)
    logs = _read_json(CTAPIPE_PROVENANCE_FILE, root)
    for entry in logs if isinstance(logs, list) else []:
        if isinstance(entry, dict):
            normal = _from_ctapipe(entry)
            if normal is not None:
                found.append(normal)
    for entry in found:
        for kind in ("used", "generated"):
            files = entry.get(kind)
            entry[kind] = [
                f
                for f in (files if isinstance(files, list) else [])[:_MAX_FILES]
                if isinstance(f, dict) and isinstance(f.get("path"), str)
            ]
    return found[:_MAX_ACTIVITIES]


# --- provenance in the products ------------------------------------------------------


def new_entity_id() -> str:
    """An entity id of the service's form (``ent_`` + 96 random bits), minted here so that
    it can be written into a product before the service records it."""
    return ENTITY_PREFIX + _token_urlsafe(12)


def provenance_refs(entity_id: str, job: tuple[str, str, str] | None = None) -> dict[str, str]:
    """What a product carries: job URL, activity id, entity id, ProvSAP URL.

    ``job`` is (service URL, job name, job id); by default the runner's environment
    (``$UWS_BASE_URL``, ``$UWS_JOBNAME``, ``$UWS_JOB_ID``). Without a service URL the
    URLs are left empty (the ids are still written).
    """
    if job is None:
        job = (
            os.environ.get("UWS_BASE_URL", ""),
            os.environ.get("UWS_JOBNAME", ""),
            os.environ.get("UWS_JOB_ID", ""),
        )
    base, jobname, job_id = job
    base = base.rstrip("/")
    job_url = f"{base}/rest/{jobname}/{job_id}" if base and jobname and job_id else ""
    return {
        "job_url": job_url,
        "activity_id": f"job:{jobname}/{job_id}" if job_id else "",
        "entity_id": entity_id,
        "provsap_url": f"{base}/provsap?ID={entity_id}&DEPTH=ALL" if base else "",
    }


# FITS keywords (8 characters at most) for each reference.
FITS_KEYWORDS = {
    "job_url": ("UWSJOB", "URL of the UWS job that produced this file"),
    "activity_id": ("UWSACT", "ProvenanceDM activity id of that job"),
    "entity_id": ("UWSENTID", "ProvenanceDM entity id of this file"),
    "provsap_url": ("UWSPROV", "ProvSAP query for this file's provenance"),
}
HDF5_PREFIX = "uws_"


def stamp(path: str, entity_id: str | None = None) -> dict[str, str]:
    """Write provenance references into a FITS or HDF5 product; record its entity id.

    Call it when the file is complete and before the job ends: the service hashes
    results after the script, so the SHA-256 it records is of the stamped file. The
    id goes to ``.uws/stamped.json`` so that the service gives the result this id.
    Returns the references written. Other file types are only recorded.
    """
    refs = provenance_refs(entity_id or new_entity_id())
    kind = product_kind(path)
    if kind == "fits":
        stamp_fits(path, refs)
    elif kind == "hdf5":
        stamp_hdf5(path, refs)
    stamped = _read_json(STAMPED_FILE)
    stamped = stamped if isinstance(stamped, dict) else {}
    stamped[_shown(path)] = refs["entity_id"]
    _write_json(STAMPED_FILE, stamped)
    return refs


def read_stamped(root: str) -> dict[str, str]:
    """``{path relative to the job dir: entity id}`` of the stamped products."""
    data = _read_json(STAMPED_FILE, root)
    if not isinstance(data, dict):
        return {}
    return {
        str(k): v
        for k, v in data.items()
        if isinstance(v, str) and v.startswith(ENTITY_PREFIX) and 4 < len(v) <= 64
    }


_GZIP_MAGIC = b"\x1f\x8b"


def record_stamp(path: str, entity_id: str) -> None:
    """Record in ``.uws/stamped.json`` that ``path`` carries ``entity_id`` (a product
    stamped elsewhere, e.g. a DL3 file stamped when it entered the store, then copied)."""
    stamped = read_stamped(job_dir())
    stamped[_shown(path)] = entity_id
    _write_json(STAMPED_FILE, stamped)


def product_kind(path: str) -> str | None:
    """ "fits" or "hdf5" from the file's first bytes (never following a link), else None."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        magic = os.read(fd, 8)
        if magic[:2] == _GZIP_MAGIC:  # gzipped FITS (DL3 observations, IRFs)
            import gzip

            os.lseek(fd, 0, os.SEEK_SET)
            with gzip.open(os.fdopen(os.dup(fd), "rb")) as f:
                magic = f.read(8)
    except (OSError, EOFError):
        return None
    finally:
        os.close(fd)
    if magic.startswith(b"SIMPLE  "):
        return "fits"
    if magic == b"\x89HDF\r\n\x1a\n":
        return "hdf5"
    return None


def stamp_results(root: str, inners: list[str]) -> dict[str, str]:
    """Stamp the declared results of a job that ended (the runner calls this before it
    hashes them, so any pipeline's FITS and HDF5 products carry their provenance).

    ``root`` is the job directory (real path), ``inners`` the results' paths inside
    it. A file the script already stamped (:func:`stamp`) is left alone; only the job's
    own regular files are touched (no link anywhere in the path, one hard link). A file
    that cannot be stamped is left as it is: stamping never fails a job. Returns the
    ``{path: entity id}`` of ``.uws/stamped.json`` afterwards.
    """
    import stat

    stamped = read_stamped(root)
    spec = _read_json(SPEC_FILE, root)
    spec = spec if isinstance(spec, dict) else {}
    job = (
        os.environ.get("UWS_BASE_URL", ""),
        str(spec.get("jobname") or ""),
        str(spec.get("job_id") or os.path.basename(root)),
    )
    changed = False
    for inner in inners:
        key = inner.replace(os.sep, "/")
        full = os.path.join(root, inner)
        if key in stamped or os.path.realpath(full) != full:
            continue
        try:
            info = os.lstat(full)
        except OSError:
            continue
        if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:
            continue
        kind = product_kind(full)
        if kind is None:
            continue
        if kind == "fits":
            # A copy of a file this job stamped elsewhere (e.g. as it entered the DL3
            # store) keeps that stamp: restamping would give the copy other bytes than
            # the original, and the two would no longer be matched by SHA-256.
            try:
                earlier = read_fits_refs(full)
            except (OSError, ValueError):
                earlier = {}
            if earlier.get("entity_id") and earlier.get("activity_id") == (
                f"job:{job[1]}/{job[2]}"
            ):
                stamped[key] = earlier["entity_id"]
                changed = True
                continue
        refs = provenance_refs(new_entity_id(), job)
        try:
            if kind == "fits":
                stamp_fits(full, refs)
            else:
                stamp_hdf5(full, refs)
        except Exception as exc:  # noqa: BLE001 - the product stays as the job wrote it
            print(f"uws: {key} not stamped: {exc}", file=sys.stderr)
            continue
        stamped[key] = refs["entity_id"]
        changed = True
    if changed:
        _write_json(STAMPED_FILE, stamped, root)
    return stamped


def _fits_card(key: str, value: str, comment: str) -> bytes:
    """One 80-character card; a long string value uses the CONTINUE convention."""
    text = value.replace("'", "''")
    cards = []
    first = True
    while True:
        room = 67  # quote, text, '&', quote within 80 columns after the key
        if len(text) <= room:
            piece, text = text, ""
        else:
            piece, text = text[: room - 1], text[room - 1 :]
            if piece.endswith("'") and not piece.endswith("''"):  # never split a quote pair
                piece, text = piece[:-1], "'" + text
            piece += "&"
        head = f"{key:<8}= " if first else "CONTINUE  "
        card = f"{head}'{piece}'"
        if not text and len(card) + 3 + len(comment) <= 80:
            card += f" / {comment}"
        cards.append(card.ljust(80)[:80])
        first = False
        if not text:
            break
    return "".join(cards).encode("ascii")


def stamp_fits(path: str, refs: dict[str, str]) -> None:
    """Put the references in a FITS file's primary header, with the standard library.

    The cards go before ``END``; existing cards of the same keywords are replaced. A
    gzipped file is decompressed, stamped and compressed again.
    When the header's last 2880-byte block has no room, one block is inserted (the data
    after the header move by 2880 bytes, as FITS requires). Written to a temporary file
    and renamed over the original.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    with os.fdopen(fd, "rb") as f:
        data = f.read()
    gzipped = data[:2] == _GZIP_MAGIC
    if gzipped:
        import gzip

        data = gzip.decompress(data)
    end = -1
    for offset in range(0, len(data), 80):
        if data[offset : offset + 8] == b"END     ":
            end = offset
            break
    if end < 0:
        raise ValueError(f"{path}: no END card in the primary header")
    header_len = (end // 2880 + 1) * 2880
    ours = {k for k, _ in FITS_KEYWORDS.values()}
    kept: list[bytes] = []
    skipping = False
    for offset in range(0, end, 80):
        card = data[offset : offset + 80]
        key = card[:8].decode("ascii", "replace").strip()
        if key in ours:
            skipping = True
            continue
        if skipping and key == "CONTINUE":
            continue
        skipping = False
        kept.append(card)
    new = b"".join(kept)
    for name, (key, comment) in FITS_KEYWORDS.items():
        if refs.get(name):
            new += _fits_card(key, refs[name], comment)
    new += b"END".ljust(80)
    padded = new.ljust(-(-len(new) // 2880) * 2880, b" ")
    out = padded + data[header_len:]
    if gzipped:  # mtime 0: the same content compresses to the same bytes
        out = gzip.compress(out, mtime=0)
    tmp = f"{path}.stamp.tmp"
    with open(tmp, "wb") as f:
        f.write(out)
    os.chmod(tmp, os.stat(path).st_mode & 0o7777)
    os.replace(tmp, path)


def read_fits_refs(path: str) -> dict[str, str]:
    """The references in a FITS primary header (what :func:`stamp_fits` wrote)."""
    with open(path, "rb") as f:
        data = f.read(2)
        f.seek(0)
        if data == _GZIP_MAGIC:
            import gzip

            with gzip.open(f) as g:
                data = g.read(2880 * 50)
        else:
            data = f.read(2880 * 50)
    by_key = {key: name for name, (key, _) in FITS_KEYWORDS.items()}
    found: dict[str, str] = {}
    current = None
    for offset in range(0, len(data), 80):
        card = data[offset : offset + 80].decode("ascii", "replace")
        key = card[:8].strip()
        if key == "END":
            break
        if key in by_key and card[8:10] == "= ":
            current = by_key[key]
            found[current] = _card_string(card[10:])
        elif key == "CONTINUE" and current:
            found[current] = found[current].removesuffix("&") + _card_string(card[8:])
        else:
            current = None
    return {k: v.removesuffix("&") for k, v in found.items()}


def _card_string(text: str) -> str:
    text = text.strip()
    if not text.startswith("'"):
        return text.split("/")[0].strip()
    out, i = [], 1
    while i < len(text):
        if text[i] == "'":
            if text[i + 1 : i + 2] == "'":
                out.append("'")
                i += 2
                continue
            break
        out.append(text[i])
        i += 1
    return "".join(out).rstrip()


def stamp_hdf5(path: str, refs: dict[str, str]) -> None:
    """Put the references in an HDF5 file's root attributes (``uws_job_url``...).

    With h5py or PyTables (ctapipe's DL1/DL2 files are HDF5 written by PyTables, which
    the science stack always has); an interpreter with neither leaves the file as is.
    """
    values = {HDF5_PREFIX + name: value for name, value in refs.items() if value}
    try:
        import h5py
    except ImportError:
        try:
            import tables
        except ImportError:
            return
        with tables.open_file(path, "r+") as f:
            for name, value in values.items():
                f.root._v_attrs[name] = value  # PyTables' public attribute set
        return
    with h5py.File(path, "r+") as f:
        for name, value in values.items():
            f.attrs[name] = value
