"""The provenance document as an SVG graph, through Graphviz ``dot``.

The DOT source is written here rather than by ``voprov.visualization.dot``. OPUS, which
used that module, lost its whole provenance step to a parameter value containing
``$(...)``; with pydot 4 voprov's module now escapes values, but a control character in
a value still makes ``dot`` fail ("not well-formed"), and record identifiers still go
into quoted DOT strings unescaped. Here no user text ever reaches DOT syntax except inside
HTML-like labels, and there it is entity-escaped (``& < > " '``), its line breaks become
``<BR/>``, and characters XML forbids become visible ``\\xNN`` escapes, so whatever a
value holds the label parses and the SVG is well-formed XML. Node names are generated
(``n1``, ``n2`` ...), never taken from the document. ``dot`` is run without a shell,
with the source on stdin.

Each element is one node showing its title (parameter name, ``prov:label`` or id), its
id and its attributes; each relation is an edge labelled with its class and role.
Values longer than :data:`MAX_VALUE_CHARS` or :data:`MAX_VALUE_LINES` are shortened in
the picture only (the other serialisations keep them whole).
"""

from __future__ import annotations

import html
import re
import shutil
import subprocess
from collections import defaultdict
from urllib.parse import quote

from prov.constants import PROV_LABEL, PROV_TYPE
from prov.identifier import QualifiedName
from prov.model import ProvDocument, ProvRecord

from .kinds import XML_INVALID, is_ivoa_type, record_kind, value_text

DOT_COMMAND = shutil.which("dot") or "/usr/bin/dot"
DOT_TIMEOUT = 60.0  # seconds; a provenance graph that takes longer is a bug
MAX_VALUE_CHARS = 400
MAX_VALUE_LINES = 12

_STYLES: dict[str, str] = {
    "activity": 'shape=box, style="filled", fillcolor="#9FB1FC", color="#0000FF"',
    "entity": 'shape=ellipse, style="filled", fillcolor="#FFFC87", color="#808080"',
    "agent": 'shape=house, style="filled", fillcolor="#FED37F"',
    "parameter": 'shape=note, style="filled", fillcolor="#4CDD4C", color="#808080"',
    "activityDescription": 'shape=box, style="filled,rounded", fillcolor="#FF7C47"',
}
_DEFAULT_STYLE = 'shape=ellipse, style="filled", fillcolor="lightgray", color="dimgray"'
_EDGE_COLORS: dict[str, str] = {
    "used": "red4",
    "wasGeneratedBy": "darkgreen",
    "wasAssociatedWith": "#C08000",
    "wasAttributedTo": "#C08000",
    "isDescribedBy": "#FF6629",
    "wasConfiguredBy": "#57B857",
}
# Not shown as rows: the title already shows them, or they restate the class.
_HIDDEN = {PROV_LABEL, PROV_TYPE}

# A URL or tooltip may go into a quoted DOT string only when it needs no escaping.
_SAFE_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:[^\s\"\\<>{}|^`]*$")


def html_text(text: str, max_chars: int = MAX_VALUE_CHARS, max_lines: int = MAX_VALUE_LINES) -> str:
    """User text as the content of a Graphviz HTML-like label.

    Escapes the five XML specials, turns line breaks into left-aligned ``<BR/>`` and
    XML-forbidden characters into ``\\xNN``; shortens long text with an ellipsis.
    """
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\t", "    ")
    text = XML_INVALID.sub(lambda m: f"\\x{ord(m.group()):02x}", text)
    lines = text.split("\n")
    if len(lines) > max_lines:
        lines = [*lines[:max_lines], f"… ({len(lines) - max_lines} more lines)"]
    shown: list[str] = []
    budget = max_chars
    for line in lines:
        if budget <= 0:
            shown.append("…")
            break
        if len(line) > budget:
            line = line[:budget] + "…"
        budget -= len(line)
        shown.append(html.escape(line, quote=True))
    return '<BR ALIGN="LEFT"/>'.join(shown)


def _row(content: str, size: int = 10, color: str = "#000000", bold: bool = False) -> str:
    if bold:
        content = f"<B>{content}</B>"
    return (
        f'<TR><TD ALIGN="LEFT" BALIGN="LEFT"><FONT POINT-SIZE="{size}" COLOR="{color}">'
        f"{content}</FONT></TD></TR>"
    )


def _title(record: ProvRecord, kind: str) -> str:
    if kind == "parameter":
        for name, value in record.attributes:
            if name.localpart == "name":
                return value_text(value)
    labels = record.get_attribute(PROV_LABEL)
    if labels:
        return value_text(sorted(labels, key=str)[0])
    return str(record.identifier)


def _node_label(record: ProvRecord, kind: str) -> str:
    title = _title(record, kind)
    rows = [_row(html_text(title, max_lines=3), size=12, bold=True)]
    if str(record.identifier) != title:
        rows.append(_row(html_text(str(record.identifier), max_lines=2), size=9, color="#333333"))
    values: dict[QualifiedName, list[str]] = defaultdict(list)
    for name, value in record.attributes:
        if name in _HIDDEN or (name == PROV_TYPE and is_ivoa_type(value)):
            continue
        text = value_text(value)
        if name.localpart == "name" and text == title:
            continue
        values[name].append(text)
    for name, texts in values.items():
        text = "\n".join(sorted(texts))
        rows.append(_row(html_text(f"{name.localpart} = {text}")))
    table = '<TABLE BORDER="0" CELLBORDER="0" CELLSPACING="0" CELLPADDING="1">'
    return f"<{table}{''.join(rows)}</TABLE>>"


def _link_attrs(qname: QualifiedName) -> str:
    """URL and tooltip for a node, when they can be quoted safely (else none)."""
    uri = qname.uri
    if _SAFE_URI.match(uri) and _SAFE_URI.match(str(qname)):
        return f', URL="{uri}", tooltip="{qname}"'
    return ', tooltip=" "'


def to_dot(doc: ProvDocument) -> str:
    """The DOT source of the document's graph."""
    node_ids: dict[QualifiedName, str] = {}
    lines = [
        "digraph provenance {",
        '  graph [rankdir="BT", charset="UTF-8", fontname="Helvetica"];',
        '  node [fontname="Helvetica", margin="0.1,0.05"];',
        '  edge [fontname="Helvetica"];',
    ]
    relations: list[tuple[ProvRecord, str]] = []
    for record in doc.get_records():
        kind = record_kind(record)
        if record.is_element() and record.identifier is not None:
            if record.identifier in node_ids:
                continue  # an element stated twice: prov keeps both records
            node = f"n{len(node_ids) + 1}"
            node_ids[record.identifier] = node
            style = _STYLES.get(kind, _DEFAULT_STYLE)
            lines.append(
                f"  {node} [{style}, label={_node_label(record, kind)}"
                f"{_link_attrs(record.identifier)}];"
            )
        else:
            relations.append((record, kind))

    for record, kind in relations:
        ends = [v for _, v in record.formal_attributes[:2]]
        if len(ends) < 2 or not all(isinstance(v, QualifiedName) for v in ends):
            continue  # nothing to draw between
        pair = []
        for qn in ends:
            if qn not in node_ids:
                node = f"n{len(node_ids) + 1}"
                node_ids[qn] = node
                lines.append(
                    f"  {node} [{_DEFAULT_STYLE}, label=<{html_text(str(qn))}>{_link_attrs(qn)}];"
                )
            pair.append(node_ids[qn])
        label = html_text(kind)
        roles = sorted(value_text(v) for n, v in record.attributes if n.localpart == "role")
        if roles:
            label += '<BR ALIGN="LEFT"/>' + html_text(", ".join(roles), max_lines=2)
        color = _EDGE_COLORS.get(kind, "gray30")
        lines.append(
            f'  {pair[0]} -> {pair[1]} [label=<<FONT POINT-SIZE="9">{label}</FONT>>, '
            f'color="{color}", fontcolor="{color}"];'
        )
    lines.append("}")
    return "\n".join(lines) + "\n"


def render_svg(dot_source: str, dot_command: str | None = None) -> bytes:
    """Run Graphviz on DOT source; raise RuntimeError with dot's message on failure."""
    cmd = dot_command or DOT_COMMAND
    try:
        proc = subprocess.run(
            [cmd, "-Tsvg"],
            input=dot_source.encode("utf-8"),
            capture_output=True,
            timeout=DOT_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise RuntimeError(f"cannot run {cmd}: {exc}") from exc
    if proc.returncode != 0:
        err = proc.stderr.decode("utf-8", "replace").strip()
        raise RuntimeError(f"{cmd} failed ({proc.returncode}): {err[:2000]}")
    return proc.stdout


def to_svg(doc: ProvDocument, compact: bool = True) -> bytes:
    """The document's graph as SVG: the compact picture unless ``compact=False``."""
    return render_svg(to_compact_dot(doc) if compact else to_dot(doc))


# --- the compact picture -------------------------------------------------------------
#
# One node per job and per file, nothing else: parameters, the definition (its version)
# and the owner are rows of the job's node, so a gammapy job is one box instead of a
# fan of 30 parameter notes. Labels are short (a file's name, not its path or id); a job
# that wrote many files nobody else in the picture used shows the first few and one
# "+ N more files" node. Jobs link to their UWS URL, files to the generating job's result.

MAX_PARAM_ROWS = 8
PARAM_VALUE_CHARS = 40
MAX_OWN_FILES = 6
LABEL_CHARS = 34
_COMPACT_EDGES = {"used": "#A04040", "wasGeneratedBy": "#2F7D32"}


def _short(text: str, limit: int = LABEL_CHARS) -> str:
    """One line of at most ``limit`` characters, as escaped label text."""
    text = " ".join(text.split())
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return html_text(text, max_chars=limit + 1, max_lines=1)


def _attr(record: ProvRecord, local_name: str) -> str:
    for name, value in record.attributes:
        if name.localpart == local_name:
            return value_text(value)
    return ""


def _ends(record: ProvRecord) -> tuple[QualifiedName, QualifiedName] | None:
    ends = [v for _, v in record.formal_attributes[:2]]
    if len(ends) < 2 or not all(isinstance(v, QualifiedName) for v in ends):
        return None
    return ends[0], ends[1]


def _url(uri: str) -> str:
    return f', URL="{uri}"' if _SAFE_URI.match(uri) else ""


def to_compact_dot(doc: ProvDocument) -> str:
    """The DOT source of the compact picture (see the comment above)."""
    elements: dict[QualifiedName, tuple[ProvRecord, str]] = {}
    relations: list[tuple[ProvRecord, str]] = []
    for record in doc.get_records():
        kind = record_kind(record)
        if record.is_element() and record.identifier is not None:
            elements.setdefault(record.identifier, (record, kind))
        else:
            relations.append((record, kind))

    params: dict[QualifiedName, list[tuple[str, str]]] = defaultdict(list)
    versions: dict[QualifiedName, str] = {}
    owners: dict[QualifiedName, list[str]] = defaultdict(list)
    used: list[tuple[QualifiedName, QualifiedName, str]] = []  # activity, entity, role
    generated: list[tuple[QualifiedName, QualifiedName, str]] = []  # entity, activity, role
    for record, kind in relations:
        ends = _ends(record)
        if ends is None:
            continue
        a, b = ends
        other = elements.get(b, (None, ""))[0]
        role = ", ".join(
            sorted(value_text(v) for n, v in record.attributes if n.localpart == "role")
        )
        if kind == "wasConfiguredBy" and other is not None:
            params[a].append((_attr(other, "name"), _attr(other, "value")))
        elif kind == "isDescribedBy" and other is not None:
            versions[a] = _attr(other, "version")
        elif kind == "wasAssociatedWith" and other is not None and role == "owner":
            owners[a].append(_title(other, "agent"))
        elif kind == "used":
            used.append((a, b, role))
        elif kind == "wasGeneratedBy":
            generated.append((a, b, role))

    activities = [q for q, (_, k) in elements.items() if k == "activity"]
    entities = [q for q, (_, k) in elements.items() if k == "entity"]
    generator = {e: a for e, a, _ in generated}
    used_by_anyone = {e for _, e, _ in used}

    lines = [
        "digraph provenance {",
        '  graph [rankdir="BT", charset="UTF-8", fontname="Helvetica", nodesep="0.25",'
        ' ranksep="0.45"];',
        '  node [fontname="Helvetica", margin="0.08,0.04"];',
        '  edge [fontname="Helvetica", fontsize="8", arrowsize="0.6"];',
    ]
    node_ids: dict[QualifiedName, str] = {}

    def node_of(q: QualifiedName) -> str:
        if q not in node_ids:
            node_ids[q] = f"n{len(node_ids) + 1}"
        return node_ids[q]

    for q in activities:
        record = elements[q][0]
        title = _title(record, "activity")
        version = versions.get(q, "")
        rows = [_row(_short(title + (f"  v{version}" if version else "")), 12, bold=True)]
        sub = [s for s in (_attr(record, "jobId"), _attr(record, "phase")) if s]
        if owners.get(q):
            sub.append(", ".join(sorted(owners[q])))
        if sub:
            rows.append(_row(_short(" · ".join(sub), 48), 9, "#333333"))
        # an input's parameter restates the file node it points to: left out
        inputs = {role for act, _, role in used if act == q and role}
        plist = sorted(p for p in params.get(q, []) if p[0] not in inputs)
        for name, value in plist[:MAX_PARAM_ROWS]:
            rows.append(_row(_short(f"{name} = {value}", PARAM_VALUE_CHARS), 9, "#1B4D1B"))
        if len(plist) > MAX_PARAM_ROWS:
            rows.append(_row(f"… {len(plist) - MAX_PARAM_ROWS} more parameters", 9, "#555555"))
        table = '<TABLE BORDER="0" CELLBORDER="0" CELLSPACING="0" CELLPADDING="1">'
        lines.append(
            f'  {node_of(q)} [shape=box, style="filled,rounded", fillcolor="#DCE3FE", '
            f'color="#3B4FC4", label=<{table}{"".join(rows)}</TABLE>>{_url(q.uri)}, '
            'tooltip=" "];'
        )

    # Files a job wrote that no job in the picture used: the first few, then one node.
    folded: dict[QualifiedName, list[QualifiedName]] = defaultdict(list)
    own: dict[QualifiedName, int] = defaultdict(int)
    for e in entities:
        a = generator.get(e)
        if a is not None and e not in used_by_anyone:
            own[a] += 1
            if own[a] > MAX_OWN_FILES:
                folded[a].append(e)
    hidden = {e for es in folded.values() for e in es}

    for e in entities:
        if e in hidden:
            continue
        record = elements[e][0]
        name = _title(record, "entity")
        if "/" in name and not name.startswith(("http:", "https:")):
            name = name.rstrip("/").rsplit("/", 1)[-1]
        size = _attr(record, "size")
        rows = [_row(_short(name), 10, bold=True)]
        if size.isdigit():
            rows.append(_row(_human(int(size)), 8, "#555555"))
        link = ""
        a = generator.get(e)
        if a is not None and a in elements:
            raw = _attr(record, "name") or _title(record, "entity")
            link = _url(f"{a.uri}/results/{quote(raw, safe='')}")
        elif _attr(record, "location").startswith(("http://", "https://")):
            link = _url(_attr(record, "location"))  # where the job fetched it from
        table = '<TABLE BORDER="0" CELLBORDER="0" CELLSPACING="0" CELLPADDING="0">'
        lines.append(
            f'  {node_of(e)} [shape=note, style="filled", fillcolor="#FFF7B3", '
            f'color="#8A7A00", label=<{table}{"".join(rows)}</TABLE>>{link}, '
            'tooltip=" "];'
        )
    for a, es in folded.items():
        more = f"{node_of(a)}_more"
        lines.append(
            f'  {more} [shape=folder, style="filled", fillcolor="#F3F3F3", color="#888888", '
            f'label=<<FONT POINT-SIZE="10">+ {len(es)} more files</FONT>>{_url(a.uri)}];'
        )
        lines.append(f'  {more} -> {node_of(a)} [color="{_COMPACT_EDGES["wasGeneratedBy"]}"];')

    for a, e, role in used:
        if a in node_ids and e in node_ids:
            label = f', label=<{_short(role, 24)}>' if role else ""
            lines.append(
                f'  {node_of(a)} -> {node_of(e)} [color="{_COMPACT_EDGES["used"]}", '
                f'fontcolor="{_COMPACT_EDGES["used"]}"{label}];'
            )
    for e, a, _role in generated:
        if e in node_ids and a in node_ids and e not in hidden:
            lines.append(
                f'  {node_of(e)} -> {node_of(a)} [color="{_COMPACT_EDGES["wasGeneratedBy"]}"];'
            )
    lines.append("}")
    return "\n".join(lines) + "\n"


def _human(size: int) -> str:
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"
