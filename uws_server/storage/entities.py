"""Entities (files a job generated, uploads, fetched URLs, files a script reported
reading) and usages (which job used which entity, in which role): their rows, and the
provenance reads built on them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass
class EntityRow:
    """One row of the entities table (its attributes are the table's columns)."""

    entity_id: str
    job_id: str | None
    name: str
    path: str | None
    location: str | None
    content_type: str | None
    size: int | None
    sha256: str | None
    owner: str
    role: str | None
    kind: str
    created: datetime
