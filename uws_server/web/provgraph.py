"""The provenance picture on the job page: clickable, fit to width, zoom and pan.

The picture is the compact Graphviz SVG (:mod:`uws_server.provenance.svg`) shown in an
``<img>``, which runs no script whatever the SVG holds; the links of its nodes become an
HTML image map (``<map>``/``<area>``) computed here from the SVG's own geometry, with
the service's REST job URLs turned into job pages (``/rest/<jobname>/<id>`` ->
``/ui/jobs/<jobname>/<id>``). Links that point anywhere else are dropped. The page's
``provgraph.js`` scales and moves the image with a CSS transform, which moves the map's
hit areas with it.

The cross-job view asks ProvSAP (``RESPONSEFORMAT=PROV-SVG``) for the chain BACK or
FORWARD to a depth, with the same owner rules as ``/provsap``.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

from lxml import etree

from uws_server.web.common import url_part

SVG = "{http://www.w3.org/2000/svg}"
XLINK_HREF = "{http://www.w3.org/1999/xlink}href"
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:e-?\d+)?")
_TRANSLATE = re.compile(r"translate\(\s*(-?[\d.]+)[ ,]+(-?[\d.]+)\s*\)")
DEPTHS = ("1", "2", "3", "4", "6", "ALL")
MAX_SVG_BYTES = 8 * 1024 * 1024  # a larger picture is linked, not parsed for a map


@dataclass
class Area:
    href: str
    title: str
    coords: str  # "x1,y1,x2,y2" in the image's own pixels (1 px = 1 pt)


@dataclass
class GraphView:
    """An SVG ready for ``<img>`` + ``<map>``: its size in points and its link areas."""

    width: int
    height: int
    areas: list[Area] = field(default_factory=list)
    data_uri: str = ""


def ui_href(href: str, base_url: str) -> str | None:
    """The page a node's link stands for, or None when it is not one of ours."""
    parts = urlsplit(href)
    base = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or parts.netloc != base.netloc:
        return None
    path = parts.path
    prefix = base.path.rstrip("/") + "/rest/"
    if not path.startswith(prefix):
        return None
    pieces = [unquote(p) for p in path[len(prefix) :].split("/")]
    if len(pieces) == 2:
        return f"/ui/jobs/{url_part(pieces[0])}/{url_part(pieces[1])}"
    if len(pieces) == 4 and pieces[2] == "results":
        return (
            f"/ui/jobs/{url_part(pieces[0])}/{url_part(pieces[1])}"
            f"/results/{url_part(pieces[3])}"
        )
    return None


def _size(value: str | None) -> int:
    m = _NUMBER.match(value or "")
    return int(float(m.group())) if m else 0


def graph_view(svg: bytes, base_url: str, embed: bool = False) -> GraphView:
    """Size and link areas of a Graphviz SVG; ``embed`` adds it as a data: URI."""
    view = GraphView(0, 0)
    if embed:
        view.data_uri = "data:image/svg+xml;base64," + base64.b64encode(svg).decode("ascii")
    if len(svg) > MAX_SVG_BYTES:
        return view
    try:
        root = etree.fromstring(svg, etree.XMLParser(resolve_entities=False, no_network=True))
    except etree.XMLSyntaxError:
        return view
    view.width, view.height = _size(root.get("width")), _size(root.get("height"))
    graph = root.find(f"{SVG}g")
    dx = dy = 0.0
    if graph is not None:
        m = _TRANSLATE.search(graph.get("transform") or "")
        if m:
            dx, dy = float(m.group(1)), float(m.group(2))
    for node in root.iter(f"{SVG}g"):
        if node.get("class") != "node":
            continue
        link = next(node.iter(f"{SVG}a"), None)
        if link is None:
            continue
        href = ui_href(link.get(XLINK_HREF) or "", base_url)
        if href is None:
            continue
        xs: list[float] = []
        ys: list[float] = []
        for shape in link:
            tag = etree.QName(shape).localname
            if tag == "ellipse":
                cx, cy = float(shape.get("cx", 0)), float(shape.get("cy", 0))
                rx, ry = float(shape.get("rx", 0)), float(shape.get("ry", 0))
                xs += [cx - rx, cx + rx]
                ys += [cy - ry, cy + ry]
            elif tag in ("polygon", "path", "polyline"):
                text = shape.get("points") or shape.get("d") or ""
                nums = [float(n) for n in _NUMBER.findall(text)]
                xs += nums[0::2]
                ys += nums[1::2]
        if not xs or not ys:
            continue
        texts = [" ".join((t.text or "").split()) for t in link.iter(f"{SVG}text")]
        coords = [min(xs) + dx, min(ys) + dy, max(xs) + dx, max(ys) + dy]
        view.areas.append(
            Area(href, " · ".join(t for t in texts[:2] if t), ",".join(f"{c:.0f}" for c in coords))
        )
    return view
