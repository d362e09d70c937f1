"""Settings: ``settings.yml`` plus ``UWS_<KEY>`` environment overrides.

One typed dataclass so that a misspelt key or a wrong type fails at start-up with a
message, not deep inside a request.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from uws_server import managers
from uws_server.common import PROJECT_ROOT

DEFAULT_CONFIG = PROJECT_ROOT / "settings.yml"

_PATH_KEYS = (
    "var_dir",
    "jobs_dir",
    "job_definitions_dir",
    "provenance_dir",
    "slurm_shared_dir",
    "dl3_store",
)


@dataclass
class Settings:
    host: str = "127.0.0.1"
    port: int = 8080
    base_url: str = ""
    database_url: str = ""
    var_dir: Path = Path("var")
    jobs_dir: Path = Path("var/jobs")
    job_definitions_dir: Path = Path("job_definitions")
    provenance_dir: Path = Path("provenance_out")
    manager: str = "local"
    local_slots: int = 2
    # Where each job's cgroup is made ("auto": under the server's own cgroup v2 when it
    # is writable; "off": a subreaper instead; or a cgroup v2 directory). See
    # workers/containment.py and docs/security.md.
    job_cgroup: str = "auto"
    pipeline_python: str = ""
    slurm_partition: str = ""
    slurm_account: str = ""
    slurm_shared_dir: Path = Path("var/jobs")
    slurm_poll_interval: float = 1.0
    callback_url: str = ""
    default_execution_duration: int = 3600
    max_execution_duration: int = 86400
    default_destruction: int = 604800
    max_wait: int = 300
    reaper_interval: float = 60.0
    max_active_jobs_per_user: int = 0
    max_parameter_length: int = 65536
    max_upload_bytes: int = 100 * 1024 * 1024
    threads: int = 600
    reserved_threads: int = 32
    head_timeout: float = 10.0  # seconds for a request's head (and small body) to arrive
    max_connections: int = 4096  # open client connections at once; past it, 503
    allow_anonymous: bool = False
    anonymous_can_list_jdl: bool = True
    allowed_fetch_hosts: list[str] = field(default_factory=list)
    max_fetch_bytes: int = 100 * 1024 * 1024
    allowed_fetch_networks: list[str] = field(default_factory=list)  # see fetch.py
    fetch_timeout: float = 60.0  # seconds for a whole fetch (connect, headers, body)
    dl3_store: Path = Path("var/dl3_store")
    vo_authority: str = "uws-server.example"
    dl3_proprietary_days: float = 0.0
    tap_maxrec_default: int = 10000  # TAP rows per answer when MAXREC is not given
    tap_maxrec_hard: int = 100000  # the most a MAXREC may ask for
    tap_sync_timeout: float = 30.0  # seconds a /tap/sync query may run
    tap_async_timeout: float = 600.0  # seconds an async TAP job may run (its executionDuration)

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.var_dir / 'uws.sqlite'}"

    @property
    def max_waiters(self) -> int:
        """How many WAIT requests may block at once without starving other requests."""
        return max(0, self.threads - self.reserved_threads)


def _coerce(name: str, kind: Any, value: Any) -> Any:
    """Turn a YAML or environment value into the field's type, or say what is wrong."""
    try:
        if kind in (bool, "bool"):
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off", ""):
                return False
            raise ValueError(f"not a boolean: {value!r}")
        if kind in (int, "int"):
            return int(value)
        if kind in (float, "float"):
            return float(value)
        if kind in (Path, "Path"):
            return Path(str(value))
        if kind in ("list[str]",):
            if isinstance(value, list):
                return [str(v) for v in value]
            return [v.strip() for v in str(value).split(",") if v.strip()]
        return "" if value is None else str(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"setting {name}: {exc}") from None


def load_settings(
    path: str | os.PathLike[str] | None = None,
    environ: dict[str, str] | None = None,
    **overrides: Any,
) -> Settings:
    """Read the YAML file, apply ``UWS_*`` variables, then explicit overrides."""
    env = os.environ if environ is None else environ
    config_path = Path(path or env.get("UWS_CONFIG") or DEFAULT_CONFIG).resolve()
    raw: dict[str, Any] = {}
    if config_path.exists():
        loaded = yaml.safe_load(config_path.read_text()) or {}
        if not isinstance(loaded, dict):
            raise ValueError(f"{config_path}: expected a mapping of settings")
        raw.update(loaded)
    fields = {f.name: f for f in dataclasses.fields(Settings)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise ValueError(f"{config_path}: unknown settings: {', '.join(unknown)}")
    for name in fields:
        env_value = env.get(f"UWS_{name.upper()}")
        if env_value is not None:
            raw[name] = env_value
    raw.update({k: v for k, v in overrides.items() if v is not None})
    values = {name: _coerce(name, fields[name].type, v) for name, v in raw.items()}
    settings = Settings(**values)
    base = config_path.parent
    for key in _PATH_KEYS:
        p: Path = getattr(settings, key)
        if not p.is_absolute():
            setattr(settings, key, (base / p).resolve())
    if settings.manager not in managers.REGISTRY:
        known = " or ".join(repr(n) for n in managers.names())
        raise ValueError(f"setting manager: must be {known}, not {settings.manager!r}")
    return settings
