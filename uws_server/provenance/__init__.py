"""IVOA ProvenanceDM documents of jobs, their serialisations, and the cross-job graph.

The service fills :mod:`.records` from its store and calls:

* :func:`build_document` / :func:`build_graph_document` -> a voprov document,
* :func:`serialize` / :func:`write_all` -> PROV-JSON, PROV-XML, PROV-N, VOTable, SVG,
* :func:`traverse` (ProvSAP) and :func:`search` / :class:`SearchQuery` over records.

Nothing here imports the service, storage or web layers; they import this package.
"""

from .document import (
    DEFAULT_BASE_URL,
    activity_id,
    build_document,
    build_graph_document,
    entity_qname,
    namespaces,
    to_w3c,
)
from .graph import (
    Condition,
    RecordSource,
    SearchQuery,
    provsap_steps,
    search,
    traverse,
)
from .records import (
    ActivityRecord,
    ContextRecord,
    EntityRecord,
    GenerationRecord,
    JobProvenance,
    ParameterRecord,
    UsageRecord,
)
from .serialize import FILENAMES, FORMATS, MEDIA_TYPES, serialize, write_all

__all__ = [
    "DEFAULT_BASE_URL",
    "FILENAMES",
    "FORMATS",
    "MEDIA_TYPES",
    "ActivityRecord",
    "Condition",
    "ContextRecord",
    "EntityRecord",
    "GenerationRecord",
    "JobProvenance",
    "ParameterRecord",
    "RecordSource",
    "SearchQuery",
    "UsageRecord",
    "activity_id",
    "build_document",
    "build_graph_document",
    "entity_qname",
    "namespaces",
    "provsap_steps",
    "search",
    "serialize",
    "to_w3c",
    "traverse",
    "write_all",
]
