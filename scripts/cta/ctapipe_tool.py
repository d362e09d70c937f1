"""Run an installed ctapipe command unmodified, with the toy DL0 EventSource registered.

Why: ctapipe discovers EventSources among imported subclasses (and ``ctapipe_io``
entry points). Importing ``toy_io`` first and then calling the command's own console
entry point gives exactly ``ctapipe-process`` & co. without installing a plugin package.
Each tool runs in its own process (started by ``jobutil.run_ctapipe_tool``), so
ctapipe's provenance singleton and memory start clean for every tool.

Usage: ``python ctapipe_tool.py ctapipe-process --input events.dl0.h5 ...``
"""

from __future__ import annotations

import sys
from importlib.metadata import entry_points


def main() -> None:
    """Dispatch to the console-script entry point named by the first argument."""
    from astropy.utils import iers

    iers.conf.auto_download = False
    iers.conf.auto_max_age = None

    import toy_io  # noqa: F401  (registers ToyDL0EventSource)

    if len(sys.argv) < 2 or not sys.argv[1].startswith("ctapipe-"):
        sys.exit("usage: ctapipe_tool.py ctapipe-<command> [arguments]")
    name = sys.argv[1]
    found = entry_points(group="console_scripts", name=name)
    if not found:
        sys.exit(f"no installed ctapipe command named {name}")
    func = next(iter(found)).load()
    sys.argv = [name] + sys.argv[2:]
    sys.exit(func())


if __name__ == "__main__":
    main()
