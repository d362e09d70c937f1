"""What TAP publishes: ``ivoa.obscore`` and ``TAP_SCHEMA``, from one description.

The ObsCore columns come from :data:`uws_server.vo.obscore.OBSCORE_COLUMNS` (helper E's
catalogue); TAP_SCHEMA describes itself with the columns of TAP 1.1 §4. The same
:class:`TableDef` list gives the ``/tap/tables`` tableset, the rows of the TAP_SCHEMA
tables and the VOTable FIELDs of results, so the three cannot disagree (taplint
compares them).

A query reads these tables through common table expressions built here:
``"ivoa.obscore"`` is ``SELECT <published columns> FROM obscore WHERE visible_to(user)``
(the internal columns are not in it, the rows another user owns are not in it), and each
TAP_SCHEMA table is its rows as literals. Nothing else is reachable by name.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from xml.sax.saxutils import escape

from sqlalchemy import Engine, select

from uws_server.models import User
from uws_server.vo.adql import literal, quote_identifier
from uws_server.vo.obscore import OBSCORE_COLUMNS, PUBLISHED_COLUMNS, ColumnDesc, visible_to

OBSCORE = "ivoa.obscore"

# ADQL 2.1 reserved words (SQL-92's and ADQL's own): a column named like one is
# published delimited ("size", "offset") in TAP_SCHEMA and /tap/tables, so that clients
# (and taplint) quote it in their queries.
ADQL_RESERVED = frozenset(
    """
    absolute action add all allocate alter and any are as asc assertion at authorization
    avg begin between bit bit_length both by cascade cascaded case cast catalog char
    character char_length character_length check close coalesce collate collation column
    commit connect connection constraint constraints continue convert corresponding count
    create cross current current_date current_time current_timestamp current_user cursor
    date day deallocate decimal declare default deferrable deferred delete desc describe
    descriptor diagnostics disconnect distinct domain double drop else end end-exec escape
    except exception exec execute exists external extract false fetch first float for
    foreign found from full get global go goto grant group having hour identity immediate
    in indicator initially inner input insensitive insert int integer intersect interval
    into is isolation join key language last leading left level like local lower match max
    min minute module month names national natural nchar next no not null nullif numeric
    octet_length of on only open option or order outer output overlaps pad partial position
    precision prepare preserve primary prior privileges procedure public read real
    references relative restrict revoke right rollback rows schema scroll second section
    select session session_user set size smallint some space sql sqlcode sqlerror sqlstate
    substring sum system_user table temporary then time timestamp timezone_hour
    timezone_minute to trailing transaction translate translation trim true union unique
    unknown update upper usage user using value values varchar varying view when whenever
    where with work write year zone
    abs acos area asin atan atan2 box ceiling centroid circle contains coord1 coord2
    coordsys cos cot degrees distance exp floor intersects log log10 mod pi point polygon
    power radians region rand round sin sqrt top tan truncate offset ilike
    """.split()
)


def published_name(name: str) -> str:
    """A column's name as TAP_SCHEMA and /tap/tables give it (reserved words delimited)."""
    return f'"{name}"' if name.lower() in ADQL_RESERVED else name


OBSCORE_UTYPE = "ivo://ivoa.net/std/ObsCore#table-1.1"

# ADQL type names (E's) → VOTable datatype; timestamps are char with xtype timestamp.
VOTABLE_TYPES = {
    "char": "char",
    "varchar": "char",
    "double": "double",
    "real": "float",
    "bigint": "long",
    "integer": "int",
    "smallint": "short",
    "timestamp": "char",
    "boolean": "boolean",
    "int": "int",
    "long": "long",
    "float": "float",
    "short": "short",
}


@dataclass(frozen=True)
class Field:
    """One column of a table or of a result, in VOTable terms."""

    name: str
    datatype: str  # VOTable datatype
    arraysize: str | None = None
    xtype: str | None = None
    unit: str | None = None
    ucd: str | None = None
    utype: str | None = None
    description: str = ""
    principal: bool = False
    indexed: bool = False
    std: bool = False


def field_from_desc(desc: ColumnDesc) -> Field:
    votype = VOTABLE_TYPES.get(desc.datatype, "char")
    arraysize = desc.arraysize
    if votype == "char" and arraysize is None:
        arraysize = "*"
    return Field(
        name=desc.name,
        datatype=votype,
        arraysize=arraysize,
        xtype=desc.xtype,
        unit=desc.unit,
        ucd=desc.ucd,
        utype=desc.utype,
        description=desc.description,
        principal=desc.principal,
        indexed=desc.indexed,
        std=desc.std,
    )


@dataclass(frozen=True)
class TableDef:
    schema: str
    name: str  # qualified: schema.table
    description: str
    fields: tuple[Field, ...]
    utype: str | None = None

    @property
    def column_names(self) -> frozenset[str]:
        return frozenset(f.name for f in self.fields)


def _ts(name: str, datatype: str, description: str, *, principal: bool = True) -> Field:
    return Field(
        name,
        datatype,
        "*" if datatype == "char" else None,
        description=description,
        principal=principal,
        std=True,
    )


_TS_TABLES: tuple[tuple[str, str, tuple[Field, ...]], ...] = (
    (
        "schemas",
        "Schemas published by this service",
        (
            _ts("schema_name", "char", "Schema name"),
            _ts("utype", "char", "Schema utype"),
            _ts("description", "char", "Description of the schema"),
            _ts("schema_index", "int", "Recommended order of display", principal=False),
        ),
    ),
    (
        "tables",
        "Tables published by this service",
        (
            _ts("schema_name", "char", "Schema the table belongs to"),
            _ts("table_name", "char", "Fully qualified table name"),
            _ts("table_type", "char", "table or view"),
            _ts("utype", "char", "Table utype"),
            _ts("description", "char", "Description of the table"),
            _ts("table_index", "int", "Recommended order of display", principal=False),
        ),
    ),
    (
        "columns",
        "Columns of the published tables",
        (
            _ts("table_name", "char", "Fully qualified table name"),
            _ts("column_name", "char", "Column name"),
            _ts("datatype", "char", "VOTable datatype"),
            _ts("arraysize", "char", "VOTable arraysize"),
            _ts("xtype", "char", "VOTable xtype"),
            _ts("size", "int", "Length of fixed-size columns (deprecated; see arraysize)"),
            _ts("description", "char", "Description of the column"),
            _ts("utype", "char", "Column utype"),
            _ts("unit", "char", "Unit (VOUnit)"),
            _ts("ucd", "char", "UCD 1+"),
            _ts("indexed", "int", "1 if the column is indexed"),
            _ts("principal", "int", "1 if the column is principal"),
            _ts("std", "int", "1 if the column is defined by a standard"),
            _ts("column_index", "int", "Recommended order of display", principal=False),
        ),
    ),
    (
        "keys",
        "Foreign keys between published tables (none)",
        (
            _ts("key_id", "char", "Key identifier"),
            _ts("from_table", "char", "Table holding the key"),
            _ts("target_table", "char", "Table the key points to"),
            _ts("description", "char", "Description of the key"),
            _ts("utype", "char", "Key utype"),
        ),
    ),
    (
        "key_columns",
        "Columns of the foreign keys (none)",
        (
            _ts("key_id", "char", "Key identifier"),
            _ts("from_column", "char", "Column in the from_table"),
            _ts("target_column", "char", "Column in the target_table"),
        ),
    ),
)

TABLES: tuple[TableDef, ...] = (
    TableDef(
        "ivoa",
        OBSCORE,
        "ObsCore 1.1 view of the CTA data sets: the DL3 observations of the store and "
        "the products of jobs (with the high-energy extension and CTA columns)",
        tuple(field_from_desc(d) for d in OBSCORE_COLUMNS),
        OBSCORE_UTYPE,
    ),
    *(
        TableDef("TAP_SCHEMA", f"TAP_SCHEMA.{name}", desc, fields)
        for name, desc, fields in _TS_TABLES
    ),
)
TABLES_BY_NAME: dict[str, TableDef] = {t.name: t for t in TABLES}
PUBLISHED: dict[str, frozenset[str]] = {t.name: t.column_names for t in TABLES}
SCHEMAS: tuple[tuple[str, str], ...] = (
    ("ivoa", "IVOA data models: the ObsCore table"),
    ("TAP_SCHEMA", "The TAP 1.1 description of this service's tables"),
)


# The foreign keys between TAP_SCHEMA's tables (TAP 1.1 §4): key id, from table,
# target table, description, [(from column, target column)].
KEYS: tuple[tuple[str, str, str, str, tuple[tuple[str, str], ...]], ...] = (
    ("tables_schema", "TAP_SCHEMA.tables", "TAP_SCHEMA.schemas", "A table's schema",
     (("schema_name", "schema_name"),)),
    ("columns_table", "TAP_SCHEMA.columns", "TAP_SCHEMA.tables", "A column's table",
     (("table_name", "table_name"),)),
    ("keys_from", "TAP_SCHEMA.keys", "TAP_SCHEMA.tables", "The table holding a key",
     (("from_table", "table_name"),)),
    ("keys_target", "TAP_SCHEMA.keys", "TAP_SCHEMA.tables", "The table a key points to",
     (("target_table", "table_name"),)),
    ("key_columns_key", "TAP_SCHEMA.key_columns", "TAP_SCHEMA.keys", "A key column's key",
     (("key_id", "key_id"),)),
)  # fmt: skip


def _flag(value: bool) -> int:
    return 1 if value else 0


def tap_schema_rows() -> dict[str, list[tuple[object, ...]]]:
    """The rows of each TAP_SCHEMA table, in the column order of :data:`TABLES`."""
    rows: dict[str, list[tuple[object, ...]]] = {
        "TAP_SCHEMA.schemas": [(n, None, d, i) for i, (n, d) in enumerate(SCHEMAS)],
        "TAP_SCHEMA.tables": [
            (t.schema, t.name, "table", t.utype, t.description, i) for i, t in enumerate(TABLES)
        ],
        "TAP_SCHEMA.columns": [],
        "TAP_SCHEMA.keys": [(k, f, t, d, None) for k, f, t, d, _ in KEYS],
        "TAP_SCHEMA.key_columns": [(k, fc, tc) for k, _, _, _, cols in KEYS for fc, tc in cols],
    }
    for t in TABLES:
        for i, f in enumerate(t.fields):
            rows["TAP_SCHEMA.columns"].append(
                (
                    t.name,
                    published_name(f.name),
                    f.datatype,
                    f.arraysize,
                    f.xtype,
                    None,
                    f.description,
                    f.utype,
                    f.unit,
                    f.ucd,
                    _flag(f.indexed),
                    _flag(f.principal),
                    _flag(f.std),
                    i,
                )
            )
    return rows


def _typed(value: object, field: Field) -> str:
    if value is None:
        kind = "INTEGER" if field.datatype in ("int", "long", "short") else "VARCHAR"
        return f"CAST(NULL AS {kind})"
    return literal(value)


def _static_cte(table: TableDef, rows: list[tuple[object, ...]]) -> str:
    names = ", ".join(quote_identifier(f.name) for f in table.fields)
    if rows:
        values = ", ".join(
            "(" + ", ".join(_typed(v, f) for v, f in zip(row, table.fields, strict=True)) + ")"
            for row in rows
        )
        body = f"VALUES {values}"
    else:
        body = "SELECT " + ", ".join(_typed(None, f) for f in table.fields) + " WHERE 1 = 0"
    return f"{quote_identifier(table.name)}({names}) AS ({body})"


_STATIC = {
    name: _static_cte(TABLES_BY_NAME[name], rows) for name, rows in tap_schema_rows().items()
}


class CTEBuilder:
    """The ``WITH`` clause a translated query needs, for one user and one database.

    The obscore expression is compiled by SQLAlchemy (the dialect's quoting, the user
    name as an escaped literal) and kept for a second per user: ``visible_to`` compares
    release dates with the current time.
    """

    def __init__(self, engine: Engine) -> None:
        self.dialect = engine.dialect
        self._cache: dict[tuple[str, bool], tuple[float, str]] = {}
        self._lock = threading.Lock()

    def obscore_cte(self, user: User | None) -> str:
        key = ("" if user is None else user.name, bool(user and user.is_admin))
        now = time.monotonic()
        hit = self._cache.get(key)
        if hit is not None and now - hit[0] < 1.0:
            return hit[1]
        stmt = select(*PUBLISHED_COLUMNS).where(visible_to(user))
        sql = str(stmt.compile(dialect=self.dialect, compile_kwargs={"literal_binds": True}))
        cte = f"{quote_identifier(OBSCORE)} AS ({sql})"
        with self._lock:
            if len(self._cache) > 1000:
                self._cache.clear()
            self._cache[key] = (now, cte)
        return cte

    def with_clause(self, tables: Iterable[str], user: User | None) -> str:
        parts = [self.obscore_cte(user) if t == OBSCORE else _STATIC[t] for t in tables]
        return "WITH " + ", ".join(parts) + " " if parts else ""


# ------------------------------------------------------------------ /tap/tables

VOSI_TABLES_NS = "http://www.ivoa.net/xml/VOSITables/v1.0"
VS_NS = "http://www.ivoa.net/xml/VODataService/v1.1"
XSI_NS = "http://www.w3.org/2001/XMLSchema-instance"


def _el(name: str, value: str | None) -> str:
    return f"<{name}>{escape(value)}</{name}>" if value else ""


def _column_xml(f: Field) -> str:
    attrs = f' arraysize="{escape(f.arraysize)}"' if f.arraysize else ""
    if f.xtype:
        attrs += f' extendedType="{escape(f.xtype)}"'
    flags = "".join(
        f"<flag>{name}</flag>"
        for name, on in (("indexed", f.indexed), ("principal", f.principal), ("std", f.std))
        if on
    )
    return (
        "<column>"
        + _el("name", published_name(f.name))
        + _el("description", f.description)
        + _el("unit", f.unit)
        + _el("ucd", f.ucd)
        + _el("utype", f.utype)
        + f'<dataType xsi:type="vs:VOTableType"{attrs}>{f.datatype}</dataType>'
        + flags
        + "</column>"
    )


def tableset_xml() -> str:
    """The VOSI tableset (VODataService 1.1) of every published table."""
    out = [
        '<?xml version="1.0" encoding="UTF-8"?>\n',
        f'<vosi:tableset xmlns:vosi="{VOSI_TABLES_NS}" xmlns:vs="{VS_NS}" xmlns:xsi="{XSI_NS}">',
    ]
    for schema, description in SCHEMAS:
        out.append(f"<schema>{_el('name', schema)}{_el('description', description)}")
        for t in TABLES:
            if t.schema != schema:
                continue
            out.append(
                '<table type="table">'
                + _el("name", t.name)
                + _el("description", t.description)
                + _el("utype", t.utype)
            )
            out.extend(_column_xml(f) for f in t.fields)
            for _key, source, target, description, columns in KEYS:
                if source == t.name:
                    out.append(
                        "<foreignKey>"
                        + _el("targetTable", target)
                        + "".join(
                            "<fkColumn>"
                            + _el("fromColumn", fc)
                            + _el("targetColumn", tc)
                            + "</fkColumn>"
                            for fc, tc in columns
                        )
                        + _el("description", description)
                        + "</foreignKey>"
                    )
            out.append("</table>")
        out.append("</schema>")
    out.append("</vosi:tableset>\n")
    return "".join(out)
