"""The "Find data" page's ADQL box: an expert's query, run as the signed-in user.

The query runs through the TAP service's own executor
(:class:`uws_server.vo.tap_query.QueryExecutor`, what ``/tap/sync`` runs): the same
ADQL parser, the same published tables, the same visibility rule, read-only with the
same time and size limits. It is called in-process rather than over HTTP because a
browser session cannot authenticate to ``/tap`` and the page must show exactly the
rows this user may see. A refused query (another table, a write, a syntax error) shows
the executor's message. Without the TAP modules the box says so instead of failing.
"""

from __future__ import annotations

import importlib
import logging
import threading
from typing import Any

import bottle

from uws_server.web.common import Ctx, WebApp
from uws_server.web.find_query import DEFAULT_RADIUS, FindQuery, query_values

log = logging.getLogger("uws_server.web.find")

MAX_ROWS = 1000
MAX_QUERY = 20000
TIMEOUT = 10.0  # seconds, when the settings give no TAP limit


def _tap_module() -> Any:
    try:
        return importlib.import_module("uws_server.vo.tap_query")
    except ImportError:
        return None


def tap_available() -> bool:
    """Whether this server has the TAP executor (helper F's ``uws_server.vo.tap_query``)."""
    module = _tap_module()
    return module is not None and hasattr(module, "QueryExecutor")


def example(q: FindQuery) -> str:
    """An ADQL query equivalent to the form's cone (a starting point for experts)."""
    where = ""
    if q.positioned:
        radius = q.radius if q.radius is not None else DEFAULT_RADIUS
        where = (
            "\nWHERE 1 = CONTAINS(POINT('ICRS', s_ra, s_dec), "
            f"CIRCLE('ICRS', {q.ra:.6g}, {q.dec:.6g}, {radius:g}))"
        )
    return (
        "SELECT TOP 100 obs_id, target_name, t_min, livetime, zen_pnt, dataproduct_type\n"
        f"FROM ivoa.obscore{where}\nORDER BY t_min"
    )


def register(app: bottle.Bottle, web: WebApp) -> None:
    service = web.service
    lock = threading.Lock()
    made: list[Any] = []

    def executor() -> Any:
        """This service's executor, made on first use (it keeps read-only connections)."""
        with lock:
            if not made:
                made.append(_tap_module().QueryExecutor(service.store.engine))
            return made[0]

    @app.get("/ui/find/adql")
    @web.page()
    def adql(ctx: Ctx) -> Any:
        values = query_values()
        query = str(values.get("query") or "").strip()
        maxrec_text = str(values.get("maxrec") or "100").strip()
        error = ""
        columns: list[str] = []
        rows: list[tuple[Any, ...]] = []
        overflow = False
        status = 200
        try:
            maxrec = max(1, min(int(maxrec_text), MAX_ROWS))
        except ValueError:
            maxrec, error, status = 100, f"at most: '{maxrec_text[:32]}' is not a number", 400
        if error:
            pass
        elif not query:
            error, status = "write an ADQL query first", 400
        elif len(query) > MAX_QUERY:
            error, status = f"the query is longer than {MAX_QUERY} characters", 400
        elif not tap_available():
            error, status = "the TAP service (/tap) is not available on this server", 503
        else:
            tap = _tap_module()
            timeout = float(getattr(service.settings, "tap_sync_timeout", 0) or TIMEOUT)
            from uws_server.vo.routes import catalogue_for

            catalogue_for(service)  # the store's new observations first, as /tap/sync does
            try:
                result = executor().run(query, ctx.user, maxrec, timeout)
            except tap.ADQLError as exc:
                error, status = str(exc), 400
            else:
                columns = [f.name for f in result.fields]
                rows, overflow = result.rows, result.overflow
        return web.render(
            ctx,
            "find_adql.tpl",
            status,
            title="ADQL query",
            query=query,
            maxrec=maxrec,
            error=error,
            columns=columns,
            rows=rows,
            overflow=overflow,
        )
