"""Loggers that import :mod:`logging` only when something is logged.

A worker runner is one short-lived process per job, and ``logging`` (with the
``traceback``, ``string``, ``weakref``... it imports) costs it several milliseconds of
CPU at start-up, although a job that runs well logs nothing. In the server, where
``logging`` is imported anyway, a :class:`LazyLogger` is the ordinary named logger.
"""

from __future__ import annotations

import sys

# Set by the runner's command line: the first message configures logging on stderr.
CONFIGURE = {"format": "", "level": 0}


class LazyLogger:
    """The few ``logging.Logger`` methods the worker modules use."""

    __slots__ = ("name", "_logger")

    def __init__(self, name: str) -> None:
        self.name = name
        self._logger = None

    def _get(self):  # type: ignore[no-untyped-def]
        if self._logger is None:
            import logging

            if CONFIGURE["format"] and not logging.getLogger().handlers:
                logging.basicConfig(
                    level=CONFIGURE["level"], format=CONFIGURE["format"], stream=sys.stderr
                )
            self._logger = logging.getLogger(self.name)
        return self._logger

    def debug(self, msg: str, *args: object) -> None:
        if "logging" in sys.modules:  # nobody configured debug output without logging
            self._get().debug(msg, *args)

    def info(self, msg: str, *args: object) -> None:
        self._get().info(msg, *args)

    def warning(self, msg: str, *args: object) -> None:
        self._get().warning(msg, *args)

    def error(self, msg: str, *args: object) -> None:
        self._get().error(msg, *args)

    def exception(self, msg: str, *args: object) -> None:
        self._get().exception(msg, *args)


def bind_job(job_id: str, owner: str, definition: str) -> None:
    """Every later line of this process names its job as the service's lines do
    (``uws_server.joblog``): ``job <id> [owner=<owner> definition=<name>]: <message>``.
    A runner serves one job; its lines end up in the batch system's output file, read by
    an operator who must see whose job it was without looking the id up."""
    context = f"job {job_id} [owner={owner or '-'} definition={definition or '-'}]: "
    CONFIGURE["format"] = str(CONFIGURE["format"]).replace(
        "%(message)s", context.replace("%", "%%") + "%(message)s"
    )


def get_logger(name: str) -> LazyLogger:
    return LazyLogger(name)
