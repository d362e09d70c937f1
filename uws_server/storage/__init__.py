"""The storage layer: every SQL statement of the service, behind methods named for
what they do (``mark_queued``, ``finish``, ``add_usages``...).

- :mod:`.store`: :class:`Store`, the jobs and their phase changes (compare-and-set),
  composed with :mod:`.entities` (entities, usages, provenance rows) and :mod:`.users`;
- :mod:`.rows`: rows to dataclasses, and hot statements compiled once;
- :mod:`.sqlite_writes`: SQLite's fast job writes (group commit), derived from the table;
- :mod:`.schema`: the database brought to the migrations' head (Alembic) at start.

The tables themselves are declared once, in :mod:`uws_server.db`.
"""

from uws_server.storage.entities import EntityRow
from uws_server.storage.store import JobEnd, JobRef, Store, visible_owner

__all__ = ["EntityRow", "JobEnd", "JobRef", "Store", "visible_owner"]
