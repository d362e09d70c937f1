"""Execution managers, and the registry that names them.

Adding an executor is one module (a :class:`~uws_server.managers.base.Manager`
subclass that knows its own specifics: ``name``, ``remote``, ``run_id_key``,
``options_for``) and one entry in :data:`REGISTRY`. Nothing else in the service tests
manager names: the ``manager`` setting is checked against this registry, the app builds
the configured manager through :func:`create`, provenance asks :func:`manager_class`
which run id to show.

Entries are import paths, imported on first use, so that a server running the local
pool never imports the Slurm manager (and the settings can be checked without
importing any manager).
"""

from __future__ import annotations

from importlib import import_module

TYPE_CHECKING = False
if TYPE_CHECKING:
    from uws_server.config import Settings
    from uws_server.managers.base import JobSink, Manager

# name (the ``manager`` setting) -> "module:Class" or the class itself
REGISTRY: dict[str, str | type[Manager]] = {
    "local": "uws_server.managers.local:LocalManager",
    "slurm": "uws_server.managers.slurm:SlurmManager",
}


def register(name: str, cls: str | type[Manager]) -> None:
    """Make ``name`` a valid ``manager`` setting, run by ``cls``."""
    REGISTRY[name] = cls


def names() -> list[str]:
    return sorted(REGISTRY)


def manager_class(name: str | None) -> type[Manager] | None:
    """The class registered under ``name``; None for a name no longer registered
    (a job run by an executor since removed)."""
    entry = REGISTRY.get(name or "")
    if entry is None or not isinstance(entry, str):
        return entry
    module, _, attr = entry.partition(":")
    cls: type[Manager] = getattr(import_module(module), attr)
    REGISTRY[name or ""] = cls
    return cls


def create(name: str, sink: JobSink, settings: Settings) -> Manager:
    """The manager ``name`` reporting to ``sink``; ValueError for an unknown name."""
    cls = manager_class(name)
    if cls is None:
        raise ValueError(f"unknown manager {name!r}: one of {', '.join(names())}")
    return cls(sink, settings)  # type: ignore[call-arg]
