"""Server-rendered web pages under ``/ui``: sign-in, job submission and follow-up,
job definition editing for operators, user management for admins.

Only :func:`register_web_routes` is used outside this package (by ``uws_server.app``);
the web layer imports the service, never the other way round.
"""

from uws_server.web.routes import register_web_routes

__all__ = ["register_web_routes"]
