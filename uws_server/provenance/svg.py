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


def to_svg(doc: ProvDocument) -> bytes:
    """The document's graph as SVG."""
    return render_svg(to_dot(doc))
