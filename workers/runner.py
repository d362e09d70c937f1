"""``python -m workers.runner JOB_DIR``: the old name of the worker runner's command line.

Kept so that batch scripts written by an earlier server still run; the command line is
:mod:`workers.node` (faster to start). The service's typed view of what a runner writes
and sends lives in :mod:`uws_server.worker_events`.
"""

from __future__ import annotations

import sys

from workers.node import main

if __name__ == "__main__":
    sys.exit(main())
