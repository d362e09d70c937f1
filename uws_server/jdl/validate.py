"""Checks on a job definition, reporting every problem at once.

A definition comes from an operator's file or an upload and ends up as file names, shell
environment variables and links on web pages. Everything that could escape the job
directory, the definitions directory or a web page is refused here, before a definition
is stored or used, and all problems are listed together so that an author fixes them in
one pass rather than one upload per mistake.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from decimal import Decimal, InvalidOperation

from uws_server.jobdef import DATATYPES, EntityDef, JobDefinition, ParameterDef
from uws_server.managers.slurm_options import sbatch_problems

Problem = tuple[str, str]

NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")
"""Names of definitions, parameters and used entities: usable in paths, URLs and XML IDs."""

_SAFE_FILENAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.+=,@-]{0,254}$")
# VOTable 1.3 arraysize: "([0-9]+x)*[0-9]*[*]?", not empty.
_ARRAYSIZE_RE = re.compile(r"^(?:[0-9]+x)*(?:[0-9]+|[0-9]*\*)$")
_INT_RE = re.compile(r"^[+-]?[0-9]+$")
_MEDIA_TYPE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*$")
_MULTIPLICITY_RE = re.compile(r"^(?:[0-9]+|\*|\+|[0-9]+\.\.(?:[0-9]+|\*))?$")
# Characters XML 1.0 cannot carry: a definition holding them could not be written back.
_XML_ILLEGAL_RE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")

LONG_MIN, LONG_MAX = -(2**63), 2**63 - 1
STRING_TYPES = frozenset({"xs:string", "xs:anyURI", "file"})
NUMERIC_TYPES = frozenset({"xs:integer", "xs:long", "xs:double", "xs:float"})
_BOOLEANS = {"true": True, "1": True, "false": False, "0": False}

# UWS 1.1 job parameters with a meaning of their own (UWS names are case-insensitive).
UWS_PARAMETERS = frozenset(
    {"phase", "runid", "executionduration", "destruction", "quote", "action", "owner"}
)
# Parameter and entity values reach the job's script as environment variables. A name
# that bash, the dynamic loader, Python, proxies-aware tools or Slurm read from the
# environment would let a job's submitter change how the script runs (BASH_ENV=uploaded
# file, LD_PRELOAD, http_proxy...). Environment names are case-sensitive.
ENV_RESERVED = frozenset(
    """PATH HOME SHELL IFS ENV USER LOGNAME PWD OLDPWD CDPATH GLOBIGNORE SHELLOPTS PS1 PS2
    PS4 PROMPT_COMMAND TERM TMPDIR TZ LANG LANGUAGE HOSTNAME HISTFILE MAIL MAILPATH NLSPATH
    PERL5LIB PERLLIB PERL5OPT RUBYOPT RUBYLIB NODE_OPTIONS CLASSPATH JAVA_TOOL_OPTIONS
    OPENSSL_CONF GCONV_PATH HOSTALIASES LOCALDOMAIN RES_OPTIONS INPUTRC MALLOC_CHECK_
    GLIBC_TUNABLES""".split()
)
ENV_PREFIXES = ("UWS_", "LD_", "BASH", "PYTHON", "SLURM_", "SBATCH_", "SRUN_", "DYLD_")
PROXY_VARIABLES = frozenset({"http_proxy", "https_proxy", "ftp_proxy", "all_proxy", "no_proxy"})

# The definition's own text fields (the web editor shows the same ones).
TEXT_FIELDS = (
    "name", "description", "doculink", "type", "subtype", "version",
    "contact_name", "contact_email", "script",
)  # fmt: skip


def is_safe_name(name: object) -> bool:
    """True for a name usable as a file name stem, URL segment and XML ID."""
    return isinstance(name, str) and NAME_RE.match(name) is not None


def is_safe_filename(name: object) -> bool:
    """True for a plain file name inside a job directory: no folder, no hidden file."""
    return isinstance(name, str) and _SAFE_FILENAME_RE.match(name) is not None and ".." not in name


def is_reserved_name(name: str) -> bool:
    """True for a UWS control parameter or a dangerous environment variable name."""
    return (
        name.lower() in UWS_PARAMETERS
        or name.lower() in PROXY_VARIABLES
        or name in ENV_RESERVED
        or name.startswith(ENV_PREFIXES)
    )


def _name_reason(name: object) -> str:
    return f"{name!r} is not a letter followed by up to 63 letters, digits, '_' or '-'"


def _scalar_problem(datatype: str, text: str) -> str | None:
    """Why ``text`` is not one value of ``datatype`` (None when it is)."""
    if datatype in ("xs:integer", "xs:long"):
        if not _INT_RE.match(text.strip()):
            return f"{text!r} is not an integer"
        if datatype == "xs:long" and not LONG_MIN <= int(text) <= LONG_MAX:
            return f"{text!r} is out of the range of a 64-bit integer"
        return None
    if datatype in ("xs:double", "xs:float"):
        try:
            number = float(text)
        except ValueError:
            return f"{text!r} is not a number"
        if not math.isfinite(number):
            return f"{text!r} is not a finite number"
        return None
    if datatype == "xs:boolean":
        if text.strip().lower() not in _BOOLEANS:
            return f"{text!r} is not a boolean (true, false, 1 or 0)"
        return None
    if datatype == "xs:anyURI":
        if not text or any(c.isspace() for c in text):
            return f"{text!r} is not a URI"
        return None
    if datatype == "file":
        if not is_safe_filename(text):
            return f"{text!r} is not a plain file name"
        return None
    return None  # xs:string: anything XML can carry, checked elsewhere


def value_problem(param: ParameterDef, value: str) -> str | None:
    """Why ``value`` is not acceptable for ``param`` (None when it is).

    Checks the datatype (each item for a list-valued parameter), MIN/MAX and OPTIONs.
    The service uses it for submitted values; validation uses it for defaults.
    """
    if param.datatype not in DATATYPES:
        return f"unknown datatype {param.datatype!r}"
    if param.arraysize and param.datatype not in STRING_TYPES:
        items = value.split()
    else:
        items = [value]
    for item in items:
        reason = _scalar_problem(param.datatype, item)
        if reason:
            return reason
        if param.datatype in NUMERIC_TYPES:
            number = _number(item)
            low = _number(param.min) if param.min is not None else None
            high = _number(param.max) if param.max is not None else None
            if number is not None and low is not None and number < low:
                return f"{item!r} is below the minimum {param.min}"
            if number is not None and high is not None and number > high:
                return f"{item!r} is above the maximum {param.max}"
    if param.options and not any(
        _same_value(param.datatype, value, option) for option in param.options
    ):
        return f"{value!r} is not one of the options {param.options}"
    return None


def _same_value(datatype: str, a: str, b: str) -> bool:
    """Equality by meaning, so that "1.0" matches the option "1" and "TRUE" matches "true"."""
    if a == b:
        return True
    if datatype in NUMERIC_TYPES:
        x, y = _number(a), _number(b)
        return x is not None and x == y
    if datatype == "xs:boolean":
        x, y = a.strip().lower(), b.strip().lower()
        return x in _BOOLEANS and y in _BOOLEANS and _BOOLEANS[x] == _BOOLEANS[y]
    return False


def _number(text: str | None) -> Decimal | None:
    """Exact numeric value, so that large longs compare without float rounding."""
    if text is None:
        return None
    try:
        number = Decimal(text.strip())
    except InvalidOperation:
        return None
    return number if number.is_finite() else None


def _illegal_chars(field: str, value: object) -> Iterable[Problem]:
    if isinstance(value, str) and _XML_ILLEGAL_RE.search(value):
        yield field, "contains control characters that cannot be stored"


_ENTITY_FIELDS = ("name", "description", "role", "multiplicity", "default", "content_type", "url")
_OPTIONAL_TEXT = ("default", "unit", "ucd", "utype", "min", "max", "arraysize")


def _check_parameter(i: int, p: ParameterDef, seen: set[str]) -> list[Problem]:
    where = f"parameters[{i}]"
    problems: list[Problem] = []
    wrong = [
        (a, "must be a string")
        for a in ("name", "datatype", "description")
        if not isinstance(getattr(p, a), str)
    ]
    wrong += [
        (a, "must be a string or null")
        for a in _OPTIONAL_TEXT
        if not isinstance(getattr(p, a), str | None)
    ]
    if not isinstance(p.required, bool):
        wrong.append(("required", "must be true or false"))
    if not isinstance(p.options, list):
        wrong.append(("options", "must be a list"))
    if wrong:
        return [(f"{where}.{a}", reason) for a, reason in wrong]
    if not is_safe_name(p.name):
        problems.append((f"{where}.name", _name_reason(p.name)))
    elif p.name.lower() in seen:
        problems.append((f"{where}.name", f"duplicate parameter name {p.name!r}"))
    elif is_reserved_name(p.name):
        problems.append((f"{where}.name", f"{p.name!r} is reserved (UWS or environment name)"))
    if is_safe_name(p.name):
        seen.add(p.name.lower())
    for attr in ("name", "description", *_OPTIONAL_TEXT):
        problems.extend(_illegal_chars(f"{where}.{attr}", getattr(p, attr)))
    for k, option in enumerate(p.options):
        problems.extend(_illegal_chars(f"{where}.options[{k}]", option))
    if p.datatype not in DATATYPES:
        problems.append(
            (f"{where}.datatype", f"{p.datatype!r} is not one of {', '.join(DATATYPES)}")
        )
        return problems
    if p.arraysize is not None and not _ARRAYSIZE_RE.match(p.arraysize):
        problems.append((f"{where}.arraysize", f"{p.arraysize!r} is not a VOTable arraysize"))
    bounds_ok = True
    for attr in ("min", "max"):
        bound = getattr(p, attr)
        if bound is None:
            continue
        if p.datatype not in NUMERIC_TYPES:
            problems.append((f"{where}.{attr}", f"only numeric parameters have a {attr}"))
            bounds_ok = False
        elif reason := _scalar_problem(p.datatype, bound):
            problems.append((f"{where}.{attr}", reason))
            bounds_ok = False
    if bounds_ok and p.min is not None and p.max is not None:
        low, high = _number(p.min), _number(p.max)
        if low is not None and high is not None and low > high:
            problems.append((f"{where}.min", f"minimum {p.min} is greater than maximum {p.max}"))
            bounds_ok = False
    options_ok = True
    if len(set(p.options)) != len(p.options):
        problems.append((f"{where}.options", "options are not unique"))
    for k, option in enumerate(p.options):
        if not isinstance(option, str):
            problems.append((f"{where}.options[{k}]", "must be a string"))
            options_ok = False
        elif reason := _scalar_problem(p.datatype, option):
            problems.append((f"{where}.options[{k}]", reason))
            options_ok = False
    # An empty default means "no default": nothing to check.
    if p.default and bounds_ok and options_ok and (reason := value_problem(p, p.default)):
        problems.append((f"{where}.default", reason))
    return problems


def _check_entity(kind: str, i: int, e: EntityDef, seen: set[str]) -> list[Problem]:
    where = f"{kind}[{i}]"
    problems: list[Problem] = []
    wrong = [a for a in _ENTITY_FIELDS if not isinstance(getattr(e, a), str)]
    if wrong:
        return [(f"{where}.{a}", "must be a string") for a in wrong]
    for attr in _ENTITY_FIELDS:
        problems.extend(_illegal_chars(f"{where}.{attr}", getattr(e, attr)))
    if kind == "used":
        # The parameter of the same name carries a used entity's value.
        if not is_safe_name(e.name):
            problems.append((f"{where}.name", _name_reason(e.name)))
        elif is_reserved_name(e.name):
            problems.append((f"{where}.name", f"{e.name!r} is reserved (UWS or environment name)"))
    elif not is_safe_filename(e.name):
        problems.append((f"{where}.name", f"{e.name!r} is not a plain file name"))
    elif NAME_RE.match(e.name) and is_reserved_name(e.name):
        problems.append((f"{where}.name", f"{e.name!r} is reserved (UWS or environment name)"))
    if e.name.lower() in seen:
        problems.append((f"{where}.name", f"duplicate entity name {e.name!r}"))
    seen.add(e.name.lower())
    if e.multiplicity and not _MULTIPLICITY_RE.match(e.multiplicity):
        problems.append(
            (f"{where}.multiplicity", f"{e.multiplicity!r} is not a number, '*', '+' or 'n..m'")
        )
    for k, media in enumerate(t.strip() for t in e.content_type.split(",") if e.content_type):
        if not _MEDIA_TYPE_RE.match(media):
            problems.append(
                (
                    f"{where}.content_type",
                    f"{media!r} (item {k}) is not a media type such as text/plain",
                )
            )
    is_file = kind == "generated" or e.url.startswith("file:")
    # A generated entity's default may be a pattern (``dl3_obs_*.fits.gz``): the runner
    # collects every match inside the job directory as name_1, name_2...
    default = e.default.replace("*", "x").replace("?", "x") if kind == "generated" else e.default
    if e.default and is_file and not is_safe_filename(default):
        problems.append((f"{where}.default", f"{e.default!r} is not a plain file name"))
    if kind == "generated" and not e.default:
        problems.append(
            (f"{where}.default", "a generated entity needs the file name the script writes")
        )
    if e.url and not (e.url == "file://$ID" or _is_web_url(e.url)):
        problems.append(
            (
                f"{where}.url",
                "must be file://$ID (an upload) or an http(s) URL, $ID standing for the entity id",
            )
        )
    return problems


def _is_web_url(url: str) -> bool:
    return (
        url.startswith(("http://", "https://"))
        and not any(c.isspace() for c in url)
        and len(url) > url.index("//") + 2
    )


def _check_int(field: str, value: object, optional: bool) -> list[Problem]:
    if value is None and optional:
        return []
    if isinstance(value, bool) or not isinstance(value, int):
        return [(field, "must be an integer number of seconds")]
    if value < 0:
        return [(field, "must not be negative")]
    return []


def validate(defn: JobDefinition) -> list[Problem]:
    """Every problem of ``defn`` as ``(field, reason)`` pairs; empty when it is valid.

    Field names follow the JSON form, e.g. ``parameters[2].default``.
    """
    problems: list[Problem] = []
    if not is_safe_name(defn.name):
        problems.append(("name", _name_reason(defn.name)))
    for attr in TEXT_FIELDS:
        value = getattr(defn, attr)
        if not isinstance(value, str):
            problems.append((attr, "must be a string"))
        else:
            problems.extend(_illegal_chars(attr, value))
    if isinstance(defn.doculink, str) and defn.doculink and not _is_web_url(defn.doculink):
        # Shown as a link on web pages: javascript: or data: URLs would run in the page.
        problems.append(("doculink", "must be an http(s) URL"))
    if not isinstance(defn.script, str) or not defn.script.strip():
        problems.append(("script", "the script to run is missing"))
    problems.extend(_check_int("execution_duration", defn.execution_duration, optional=False))
    problems.extend(_check_int("quote", defn.quote, optional=True))
    seen: set[str] = set()
    for i, p in enumerate(defn.parameters):
        problems.extend(_check_parameter(i, p, seen))
    used_seen: set[str] = set()
    for i, e in enumerate(defn.used):
        problems.extend(_check_entity("used", i, e, used_seen))
    generated_seen: set[str] = set()
    for i, e in enumerate(defn.generated):
        problems.extend(_check_entity("generated", i, e, generated_seen))
        # Both would become the same environment variable with different meanings.
        if e.name.lower() in seen or e.name.lower() in used_seen:
            problems.append(
                (f"generated[{i}].name", f"{e.name!r} is also a parameter or used entity")
            )
    problems.extend(_check_datasets(defn))
    problems.extend(_check_summaries(defn))
    if isinstance(defn.sbatch_options, list):
        problems.extend(sbatch_problems(defn.sbatch_options))
    else:
        problems.append(("sbatch_options", "must be a list of options"))
    return problems


# ObsCore 1.1 dataproduct_type values (plus the high-energy extension's event list names).
DATAPRODUCT_TYPES = frozenset(
    {
        "image",
        "cube",
        "spectrum",
        "sed",
        "timeseries",
        "visibility",
        "event",
        "measurements",
        "hea-event-list",
        "hea-event-bundle",
    }
)


MAX_SUMMARY_CHARS = 1000
_SUMMARY_KEY = re.compile(r"^[^\s±,+]{1,100}$")


def _check_summaries(defn: JobDefinition) -> list[tuple[str, str]]:
    """A ``summary`` marker: comma-separated JSON keys, ``key+-error_key`` pairs (ASCII:
    a VOTable ``char`` value; ``±`` is read as ``+-`` too)."""
    problems: list[tuple[str, str]] = []
    for i, e in enumerate(defn.generated):
        summary = getattr(e, "summary", "")
        if not summary:
            continue
        where = f"generated[{i}].summary"
        if not isinstance(summary, str) or len(summary) > MAX_SUMMARY_CHARS:
            problems.append((where, f"must be text of at most {MAX_SUMMARY_CHARS} characters"))
            continue
        for spec in summary.split(","):
            parts = [p.strip() for p in spec.replace("±", "+-").split("+-")]
            if len(parts) > 2 or not all(_SUMMARY_KEY.match(p) for p in parts):
                problems.append(
                    (where, f"{spec.strip()[:40]!r} is not a key or a key+-error_key pair")
                )
                break
    return problems


def _check_datasets(defn: JobDefinition) -> list[tuple[str, str]]:
    """A generated entity marked as a catalogued data set: a known type, a level 0-4,
    a preview that names another generated entity."""
    problems: list[tuple[str, str]] = []
    names = {e.name for e in defn.generated}
    for i, e in enumerate(defn.generated):
        kind = getattr(e, "dataproduct_type", "")
        level = getattr(e, "calib_level", "")
        preview = getattr(e, "preview", "")
        if not isinstance(kind, str) or not isinstance(level, str):
            problems.append((f"generated[{i}].dataproduct_type", "must be text"))
            continue
        if kind and kind not in DATAPRODUCT_TYPES:
            problems.append(
                (
                    f"generated[{i}].dataproduct_type",
                    f"{kind!r} is not an ObsCore data product type "
                    f"({', '.join(sorted(DATAPRODUCT_TYPES))})",
                )
            )
        if level and not (kind and level in ("0", "1", "2", "3", "4")):
            problems.append(
                (
                    f"generated[{i}].calib_level",
                    "must be 0 to 4, with a dataproduct_type",
                )
            )
        if kind and not level:
            problems.append((f"generated[{i}].calib_level", "a catalogued data set needs one"))
        if preview and (not kind or preview not in names or preview == e.name):
            problems.append(
                (
                    f"generated[{i}].preview",
                    f"{preview!r} must name another generated entity of a catalogued data set",
                )
            )
    return problems
