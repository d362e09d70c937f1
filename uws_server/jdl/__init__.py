"""Job definitions (ActivityDescription, "JDL"): the OPUS VOTable format, a JSON form,
validation, the definitions directory and the ``/jdl`` HTTP routes.

The rest of the service uses :class:`JobDefinitionRegistry` to look definitions up and
:func:`value_problem` to check submitted parameter values against them.
"""

from uws_server.jdl.json_form import from_json, to_json
from uws_server.jdl.registry import HistoryEntry, JobDefinitionRegistry, LoadError
from uws_server.jdl.routes import error_plugin, error_response, register_jdl_routes
from uws_server.jdl.validate import is_safe_filename, is_safe_name, validate, value_problem
from uws_server.jdl.votable import (
    VOTABLE_CONTENT_TYPE,
    read_votable,
    read_votable_file,
    write_votable,
)

__all__ = [
    "VOTABLE_CONTENT_TYPE",
    "HistoryEntry",
    "JobDefinitionRegistry",
    "LoadError",
    "error_plugin",
    "error_response",
    "from_json",
    "is_safe_filename",
    "is_safe_name",
    "read_votable",
    "read_votable_file",
    "register_jdl_routes",
    "to_json",
    "validate",
    "value_problem",
    "write_votable",
]
