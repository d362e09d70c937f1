"""Run an installed ctapipe command unmodified, with the toy DL0 EventSource registered.

Why: ctapipe discovers EventSources among imported subclasses (and ``ctapipe_io``
entry points). Importing ``toy_io`` first and then calling the command's own console
entry point gives exactly ``ctapipe-process`` & co. without installing a plugin package.
Each tool runs in its own process (forked or started by ``jobutil.run_ctapipe_tool``), so
ctapipe's provenance singleton and memory start clean for every tool.

Usage: ``python ctapipe_tool.py ctapipe-process --input events.dl0.h5 ...``
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from importlib.metadata import entry_points


def load(name: str) -> Callable[[], int | None]:
    """The console-script entry point of ctapipe command ``name``, imported.

    The toy EventSource is registered first and astropy kept offline (no IERS download).
    ``SystemExit`` with a message for an unknown command, as the command line would.
    """
    from astropy.utils import iers

    iers.conf.auto_download = False
    iers.conf.auto_max_age = None

    import toy_io  # noqa: F401  (registers ToyDL0EventSource)

    if not name.startswith("ctapipe-"):
        sys.exit("usage: ctapipe_tool.py ctapipe-<command> [arguments]")
    found = entry_points(group="console_scripts", name=name)
    if not found:
        sys.exit(f"no installed ctapipe command named {name}")
    return next(iter(found)).load()


def call(func: Callable[[], int | None], argv: list[str]) -> int | None:
    """Run an entry point as its command line would: ``argv[0]`` is the command's name."""
    sys.argv = list(argv)
    return func()


def main() -> None:
    """Dispatch to the console-script entry point named by the first argument."""
    if len(sys.argv) < 2:
        sys.exit("usage: ctapipe_tool.py ctapipe-<command> [arguments]")
    sys.exit(call(load(sys.argv[1]), [sys.argv[1], *sys.argv[2:]]))


if __name__ == "__main__":
    main()
