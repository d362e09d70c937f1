"""ADQL → the database's SQL, through queryparser-python3 (no ADQL grammar of our own).

The parser does the language: ``ADQLQueryTranslator`` turns ADQL 2.x into PostgreSQL
(geometry as pgSphere operators) or MySQL (geometry as function calls, identifiers in
backticks), and ``PostgreSQLQueryProcessor`` lists the tables, columns and functions a
query touches. This module only decides what a query may touch and where the names
point:

- every table must be a published one (``ivoa.obscore`` or a ``TAP_SCHEMA`` table),
  every named column a published column of it, every function one of :data:`FUNCTIONS`;
  anything else is an :class:`ADQLError` (a 400 saying why);
- one statement only (the translator silently drops what follows a ``;``);
- a published table reference ``schema.table`` becomes one quoted name,
  ``"schema.table"``, which the executor defines as a common table expression (the
  visible rows of ``obscore``, or TAP_SCHEMA's rows as literals): the query cannot name
  the physical tables at all;
- a cone (``CONTAINS(POINT(..), CIRCLE(<constants>))``) gets the declination band it
  implies added next to it (and the RA range, ``asin(sin r / cos dec)`` either side,
  when that neither wraps nor nears a pole), so that the ``(s_dec, s_ra)`` index cuts
  the rows the geometry test sees; ``band AND contains`` is the same predicate as
  ``contains`` (a point in the circle is always in the band), so the answer never
  changes.

SQLite runs the MySQL form, with the geometry functions of :mod:`adql_sqlite`;
PostgreSQL runs the PostgreSQL form on pgSphere.
"""

from __future__ import annotations

import logging
import math
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import antlr4
from antlr4.atn.PredictionMode import PredictionMode
from queryparser.adql import ADQLQueryTranslator
from queryparser.adql.ADQLLexer import ADQLLexer
from queryparser.adql.ADQLParser import ADQLParser
from queryparser.adql.adqltranslator import SyntaxErrorListener
from queryparser.exceptions import QueryError, QuerySyntaxError
from queryparser.mysql import MySQLQueryProcessor
from queryparser.mysql.MySQLParser import MySQLParser
from queryparser.postgresql import PostgreSQLQueryProcessor
from queryparser.postgresql.PostgreSQLParser import PostgreSQLParser

MAX_QUERY_CHARS = 20000

# Functions the translated SQL may call (lower case): ADQL's math, string and aggregate
# functions as the translator spells them, and the geometry it emits.
FUNCTIONS = frozenset(
    """
    count sum avg min max abs ceiling ceil degrees exp floor log log10 ln mod pi power
    radians sqrt rand random round truncate trunc sin cos tan asin acos atan atan2 cot
    lower upper coalesce
    spoint scircle sbox spoly sdist srcontainsl soverlaps area sarea square_degrees
    spoint_dwithin
    """.split()
)

# Words that may follow a table reference without being its alias.
_NOT_ALIAS = frozenset(
    """
    where join inner left right full outer cross natural on using group order limit offset
    union except intersect having as window fetch for
    """.split()
)

_TOKEN = re.compile(
    r"""'(?:[^']|'')*'|"(?:[^"]|"")*"|`(?:[^`]|``)*`|[A-Za-z_][A-Za-z0-9_$]*|\s+|.""",
    re.S,
)
_NUM = r"(-?[0-9]+(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?)"
_COL = r"([A-Za-z0-9_`\".]+)"
# The cone as each translation writes it (constants only in the circle).
_CONE = {
    "mysql": re.compile(
        rf"(?:1 = )?srcontainsl\(spoint\(RADIANS\({_COL}\), RADIANS\({_COL}\)\), "
        rf"scircle\(spoint\(RADIANS\({_NUM}\), RADIANS\({_NUM}\)\), RADIANS\({_NUM}\)\)\)"
    ),
    "postgresql": re.compile(
        rf"spoint\(RADIANS\({_COL}\), RADIANS\({_COL}\)\) @ "
        rf"scircle\(spoint\(RADIANS\({_NUM}\), RADIANS\({_NUM}\)\), RADIANS\({_NUM}\)\)"
    ),
}


class _QueryparserDebug(logging.Filter):
    """queryparser logs its parse trees with ``logging.info`` on the root logger: one
    line per clause of every query. Dropped here (only records from its own files)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "/queryparser/" not in record.pathname.replace("\\", "/")


logging.getLogger().addFilter(_QueryparserDebug())


class ADQLError(ValueError):
    """A query this service refuses; the message tells the user why (HTTP 400)."""


@dataclass(frozen=True)
class Translated:
    """A query ready for one database.

    ``sql`` names each published table as ``"schema.table"`` (to be defined by the
    executor as a common table expression); ``tables`` lists those canonical names;
    ``display`` maps each output column (by name) to the published column it shows, if
    it shows one directly (``(canonical table, column)``), for the result's metadata.
    """

    sql: str
    tables: tuple[str, ...]
    display: dict[str, tuple[str, str]]


def _unquote(token: str) -> str:
    if token[:1] in ('"', "`") and len(token) >= 2:
        return token[1:-1].replace(token[0] * 2, token[0])
    return token


def _is_name(token: str) -> bool:
    return token[:1].isalpha() or token[:1] in ('"', "`", "_")


def check_single_statement(adql: str) -> None:
    """One statement only: a ``;`` may end the query, nothing may follow it."""
    tokens = _TOKEN.findall(adql)
    for i, tok in enumerate(tokens):
        if tok == ";" and any(not t.isspace() for t in tokens[i + 1 :]):
            raise ADQLError("only one statement is allowed: nothing may follow ';'")


def _syntax_message(exc: QuerySyntaxError) -> str:
    try:
        line, col, near = exc.syntax_errors[0]
        return f"ADQL syntax error at line {line}, column {col + 1}, near '{near}'"
    except (AttributeError, IndexError, TypeError, ValueError):
        return "ADQL syntax error"


@dataclass(frozen=True)
class _Parsed:
    """What the parser says about one query text (cached by its literal-free shape)."""

    sql: str
    tables: tuple[tuple[str, str], ...]
    columns: tuple[tuple[str, str, str | None], ...]
    functions: tuple[str, ...]
    display: tuple[tuple[str, tuple[str, ...] | None], ...]


_LITERAL = re.compile(
    r"""'(?:[^']|'')*'|"(?:[^"]|"")*"|[A-Za-z_][A-Za-z0-9_$]*|"""
    r"""(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?|\s+|.""",
    re.S,
)
_SENTINEL_BASE = 731_000_000


def _sll(parser_class: type) -> type:
    """The parser class in ANTLR's SLL prediction mode."""

    class SLLParser(parser_class):  # type: ignore[misc, valid-type]
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, **kwargs)
            self._interp.predictionMode = PredictionMode.SLL

    SLLParser.__name__ = f"SLL{parser_class.__name__}"
    return SLLParser


class _SLLTranslator(ADQLQueryTranslator):
    """queryparser's translator, parsing in SLL mode (its ``parse`` with one change).

    ANTLR's default LL prediction is slow in the Python runtime (full-context retries
    on this grammar), SLL far faster (docs/benchmarks.md, "Data access"). SLL never accepts a text
    LL would reject, and a text it rejects is parsed again in LL mode (ANTLR's two-stage
    parsing), so answers and error messages are LL's. Relies on the attributes queryparser
    0.8's ``parse`` sets (``stream``, ``parser``, ``tree``, ``walker``): setup.py pins
    <0.9, and every ADQL test goes through here.
    """

    def parse(self) -> None:
        lexer = ADQLLexer(antlr4.InputStream(self.query))
        self.syntax_error_listener = SyntaxErrorListener()
        lexer._listeners = [self.syntax_error_listener]
        self.stream = antlr4.CommonTokenStream(lexer)
        self.parser = _SLL_ADQL(self.stream)
        self.parser._listeners = [self.syntax_error_listener]
        self.tree = self.parser.query()
        if self.syntax_error_listener.syntax_errors:
            raise QuerySyntaxError(self.syntax_error_listener.syntax_errors)
        self.walker = antlr4.ParseTreeWalker()


_SLL_ADQL = _sll(ADQLParser)
_SLL_MYSQL = _sll(MySQLParser)
_SLL_POSTGRESQL = _sll(PostgreSQLParser)


def _translate(adql: str, dialect: str, fast: bool) -> tuple[str, object]:
    translator = _SLLTranslator(adql) if fast else ADQLQueryTranslator(adql)
    if dialect == "sqlite":
        sql = translator.to_mysql()
        processor = MySQLQueryProcessor()
        if fast:
            processor.parser = _SLL_MYSQL
    else:
        sql = translator.to_postgresql()
        processor = PostgreSQLQueryProcessor()
        if fast:
            processor.parser = _SLL_POSTGRESQL
    processor.set_query(sql)
    processor.process_query()
    return sql, processor


def _run_parser(adql: str, dialect: str) -> _Parsed:
    """queryparser on one text: the translation for ``dialect`` and what its processor
    finds in it (SLL first, LL when SLL finds an error)."""
    try:
        try:
            sql, processor = _translate(adql, dialect, fast=True)
        except QuerySyntaxError:
            sql, processor = _translate(adql, dialect, fast=False)
    except QuerySyntaxError as exc:
        raise ADQLError(_syntax_message(exc)) from None
    except QueryError as exc:
        text = str(exc)
        if "schema" in text.lower():
            text = "every table must be named with its schema (e.g. ivoa.obscore)"
        raise ADQLError(f"ADQL error: {text}") from None
    except Exception as exc:  # noqa: BLE001 - the parser's own failures are the query's
        raise ADQLError(f"ADQL the parser cannot handle: {type(exc).__name__}: {exc}") from None
    if not sql or not sql.strip():
        raise ADQLError("the query is not a SELECT statement")
    return _Parsed(
        sql,
        tuple((s, t) for s, t in processor.tables),
        tuple((s, t, c) for s, t, c in processor.columns),
        tuple(processor.functions),
        tuple((n, tuple(p) if p else None) for n, p in processor.display_columns),
    )


_GEOMETRY = frozenset({"point", "circle", "box", "polygon", "region"})


def _is_frame(tokens: list[str], i: int) -> bool:
    """A geometry's coordinate system ('ICRS'): the translator drops it, so it is kept
    in the shape as written."""
    j = i - 1
    while j >= 0 and tokens[j].isspace():
        j -= 1
    if j < 0 or tokens[j] != "(":
        return False
    j -= 1
    while j >= 0 and tokens[j].isspace():
        j -= 1
    return j >= 0 and tokens[j].lower() in _GEOMETRY


# After these a '-' is a sign, not a subtraction.
_UNARY_AFTER = frozenset(
    ["(", ",", "=", "<", ">", "and", "or", "not", "between", "select", "where", "when", "then",
     "else", "top", "by"]
)  # fmt: skip


def _take_sign(shape: list[str]) -> str:
    """A unary minus just before a number moves into its literal (``-30`` is one
    literal), so that a cone in the south has the shape of one in the north."""
    j = len(shape) - 1
    while j >= 0 and shape[j].isspace():
        j -= 1
    if j < 0 or shape[j] != "-":
        return ""
    k = j - 1
    while k >= 0 and shape[k].isspace():
        k -= 1
    if k >= 0 and shape[k].lower() not in _UNARY_AFTER:
        return ""
    del shape[j:]
    return "-"


class _ShapeCache:
    """Parses by shape: literals become sentinels, the parser runs once per shape.

    The ANTLR runtime costs far more than running a cone query, and clients send the
    same query with other numbers (a position, a radius, TOP). So each numeric literal
    is replaced by a sentinel number and each string by a sentinel string, the shape is
    parsed once, and the literals are put back into the translated SQL. Whenever a
    sentinel does not come out verbatim (e.g. BOX, whose corners the translator
    computes, or POLYGON's vertex list), the query is parsed as written instead.
    """

    def __init__(self, size: int = 512) -> None:
        self.size = size
        self._shapes: dict[tuple[str, str], _Parsed] = {}
        self._lock = threading.Lock()

    def parse(self, adql: str, dialect: str) -> _Parsed:
        tokens = _LITERAL.findall(adql)
        literals: list[str] = []
        shape: list[str] = []
        for i, tok in enumerate(tokens):
            if tok in ("0", "1"):  # CONTAINS(...) = 1 must stay as written
                shape.append(tok)
            elif tok[:1].isdigit() or (tok[:1] == "." and tok[1:2].isdigit()):
                literals.append(_take_sign(shape) + tok)
                shape.append(str(_SENTINEL_BASE + len(literals)))
            elif tok[:1] == "'" and not _is_frame(tokens, i):
                literals.append(tok)
                shape.append(f"'tapq{len(literals)}z'")
            else:
                shape.append(tok)
        if not literals:
            return self._cached(adql, dialect)
        text = "".join(shape)
        parsed = self._cached(text, dialect)
        filled = self._fill(parsed.sql, literals)
        if filled is None:
            return _run_parser(adql, dialect)
        return _Parsed(filled, parsed.tables, parsed.columns, parsed.functions, parsed.display)

    @staticmethod
    def _fill(sql: str, literals: list[str]) -> str | None:
        seen: set[int] = set()

        def put(match: re.Match[str]) -> str:
            if match.group(1):
                k = int(match.group(1)) - _SENTINEL_BASE
            else:
                k = int(match.group(2))
            if not 1 <= k <= len(literals):
                raise KeyError(k)
            seen.add(k)
            return literals[k - 1]

        # a sentinel as the translator writes it: 731000004 or 731000004.0, never part
        # of a longer number (inside pgSphere's '{(731000004.0d,...)}' too)
        head = str(_SENTINEL_BASE)[:3]
        pattern = re.compile(
            rf"(?<![0-9A-Za-z_$.])({head}[0-9]{{6}})(?:\.0(?![0-9])|(?![0-9.]))|'tapq([0-9]+)z'"
        )
        try:
            filled = pattern.sub(put, sql)
        except KeyError:
            return None
        return filled if len(seen) == len(literals) else None

    def _cached(self, text: str, dialect: str) -> _Parsed:
        hit = self._shapes.get((dialect, text))
        if hit is not None:
            return hit
        parsed = _run_parser(text, dialect)
        with self._lock:
            if len(self._shapes) >= self.size:
                self._shapes.clear()
            self._shapes[(dialect, text)] = parsed
        return parsed


_shapes = _ShapeCache()


def parse(adql: str, dialect: str, published: Mapping[str, frozenset[str]]) -> Translated:
    """Translate ``adql`` for ``dialect`` ('sqlite' or 'postgresql') or raise ADQLError.

    ``published``: canonical table name (``schema.table``) → its published column names.
    """
    if not adql or not adql.strip():
        raise ADQLError("QUERY is empty")
    if len(adql) > MAX_QUERY_CHARS:
        raise ADQLError(f"QUERY is longer than {MAX_QUERY_CHARS} characters")
    if "\x00" in adql:
        raise ADQLError("QUERY contains a NUL character")
    check_single_statement(adql)
    parsed = _shapes.parse(adql, dialect)
    sql = parsed.sql

    by_lower = {name.lower(): name for name in published}
    tables: list[str] = []
    for schema, table in parsed.tables:
        canonical = by_lower.get(f"{schema}.{table}".lower())
        if canonical is None:
            known = ", ".join(sorted(published))
            raise ADQLError(f"unknown table '{schema}.{table}': this service publishes {known}")
        if canonical not in tables:
            tables.append(canonical)
    for schema, table, column in parsed.columns:
        if column is None or column == "*":
            continue
        canonical = by_lower.get(f"{schema}.{table}".lower(), f"{schema}.{table}")
        columns = {c.lower() for c in published.get(canonical, frozenset())}
        if column.lower() not in columns:
            raise ADQLError(f"unknown column '{column}' in table {canonical}")
    for name in parsed.functions:
        if name.lower() not in FUNCTIONS:
            raise ADQLError(f"function '{name}' is not available in this service's ADQL")

    display: dict[str, tuple[str, str]] = {}
    for name, path in parsed.display:
        if path and len(path) == 3 and path[2] not in (None, "*"):
            canonical = by_lower.get(f"{path[0]}.{path[1]}".lower())
            if canonical is not None:
                display[name] = (canonical, path[2].lower())

    key = "mysql" if dialect == "sqlite" else "postgresql"
    sql = add_cone_bands(sql.strip().rstrip(";").strip(), _CONE[key], dialect == "sqlite")
    if dialect != "sqlite":
        sql = rewrite_dwithin(sql)
    sql = rename_tables(sql, by_lower)
    return Translated(sql=sql, tables=tuple(tables), display=display)


def _split_call(sql: str, start: int) -> tuple[list[str], int] | None:
    """The top-level arguments of the call whose '(' is at ``start``, and the index
    after its ')'; None if unbalanced."""
    args: list[str] = []
    depth = 0
    current: list[str] = []
    pos = start
    for tok in _TOKEN.findall(sql[start:]):
        pos += len(tok)
        if tok == "(":
            depth += 1
            if depth == 1:
                continue
        elif tok == ")":
            depth -= 1
            if depth == 0:
                args.append("".join(current).strip())
                return args, pos
        elif tok == "," and depth == 1:
            args.append("".join(current).strip())
            current = []
            continue
        current.append(tok)
    return None


def rewrite_dwithin(sql: str) -> str:
    """``spoint_dwithin(a, b, r)`` (what the translator writes for ``DISTANCE(..) < r``;
    pgSphere 1.2's function, absent from Debian's 1.1) → ``(a) <-> (b) <= (r)``, the
    same test with pgSphere 1.1's distance operator."""
    spans = _string_spans(sql)
    out = []
    pos = 0
    for match in re.finditer(r"\bspoint_dwithin\s*\(", sql):
        if match.start() < pos or any(s <= match.start() < e for s, e in spans):
            continue
        call = _split_call(sql, match.end() - 1)
        if call is None or len(call[0]) != 3:
            continue
        a, b, r = call[0]
        out.append(sql[pos : match.start()])
        out.append(f"(({a}) <-> ({b}) <= ({r}))")
        pos = call[1]
    out.append(sql[pos:])
    return "".join(out)


def _string_spans(sql: str) -> list[tuple[int, int]]:
    spans = []
    pos = 0
    for tok in _TOKEN.findall(sql):
        if tok.startswith("'"):
            spans.append((pos, pos + len(tok)))
        pos += len(tok)
    return spans


def ra_range(ra: float, dec: float, radius: float) -> tuple[float, float] | None:
    """The RA interval (degrees) holding every point within ``radius`` of (ra, dec):
    ``asin(sin r / cos dec)`` either side (a small circle's widest extent); None when
    the circle comes near a pole or the interval would wrap around 0/360."""
    if abs(dec) + radius >= 89.0:
        return None
    half = math.degrees(
        math.asin(min(1.0, math.sin(math.radians(radius)) / math.cos(math.radians(dec))))
    )
    half += 1e-6  # rounding margin: the band may hold more, never less
    ra0 = ra % 360.0
    if ra0 - half < 0.0 or ra0 + half > 360.0:
        return None
    return ra0 - half, ra0 + half


def add_cone_bands(sql: str, pattern: re.Pattern[str], arithmetic: bool = False) -> str:
    """Add ``dec BETWEEN b-r AND b+r`` to each constant cone (see the module's text).

    ``arithmetic`` (SQLite): the cone itself becomes the spherical law of cosines in SQL
    (SQLite's built-in math functions, in C) instead of two Python calls per row; the
    same predicate as ``srcontainsl(spoint(..), scircle(..))``, NULL for a NULL position.
    """
    spans = _string_spans(sql)

    def band(match: re.Match[str]) -> str:
        start, end = match.span()
        if any(s < end and start < e for s, e in spans):
            return match.group(0)  # inside a string literal: not SQL
        ra_col, dec_col = match.group(1), match.group(2)
        ra, dec, radius = float(match.group(3)), float(match.group(4)), float(match.group(5))
        if not 0 <= radius < 90:
            return match.group(0)
        lo, hi = max(-90.0, dec - radius), min(90.0, dec + radius)
        band = f"{dec_col} BETWEEN {lo!r} AND {hi!r}"
        ras = ra_range(ra, dec, radius)
        if ras is not None:
            band += f" AND {ra_col} BETWEEN {ras[0]!r} AND {ras[1]!r}"
        if arithmetic:  # the same test as plain SQL: cos(distance) >= cos(radius)
            d0, r0 = math.radians(dec), math.radians(ra)
            cos_r = math.cos(math.radians(radius))
            test = (
                f"SIN(RADIANS({dec_col})) * {math.sin(d0)!r} + COS(RADIANS({dec_col})) * "
                f"{math.cos(d0)!r} * COS(RADIANS({ra_col}) - {r0!r}) >= {cos_r!r}"
            )
            return f"({band} AND {test})"
        return f"({match.group(0)} AND {band})"

    return pattern.sub(band, sql)


def rename_tables(sql: str, by_lower: Mapping[str, str]) -> str:
    """``schema.table`` → ``"schema.table" AS "table"`` (or without the alias when the
    query gives one); ``schema.table.column`` → ``"table".column``."""
    tokens = _TOKEN.findall(sql)
    out: list[str] = []
    i = 0
    n = len(tokens)
    while i < n:
        tok = tokens[i]
        if (
            _is_name(tok)
            and i + 2 < n
            and tokens[i + 1] == "."
            and _is_name(tokens[i + 2])
            and (out[-1:] != ["."])
        ):
            canonical = by_lower.get(f"{_unquote(tok)}.{_unquote(tokens[i + 2])}".lower())
            if canonical is not None:
                alias = canonical.split(".", 1)[1]
                if i + 3 < n and tokens[i + 3] == ".":  # a column: table.column
                    out.append(_quote(alias))
                else:
                    out.append(_quote(canonical))
                    if not _has_alias(tokens, i + 3):
                        out.append(f" AS {_quote(alias)}")
                i += 3
                continue
        out.append(tok)
        i += 1
    return "".join(out)


def _has_alias(tokens: list[str], i: int) -> bool:
    while i < len(tokens) and tokens[i].isspace():
        i += 1
    if i >= len(tokens):
        return False
    tok = tokens[i]
    return _is_name(tok) and _unquote(tok).lower() not in _NOT_ALIAS or tok.lower() == "as"


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def literal(value: object) -> str:
    """A SQL literal for our own metadata values (TAP_SCHEMA rows)."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    return "'" + str(value).replace("'", "''") + "'"


Quote = Callable[[str], str]
quote_identifier: Quote = _quote
