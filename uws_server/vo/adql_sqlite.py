"""ADQL geometry on SQLite: the functions the MySQL translation calls, in Python.

queryparser's MySQL translation writes ADQL geometry as plain function calls
(``srcontainsl(spoint(RADIANS(ra), RADIANS(dec)), scircle(...))``), a syntax SQLite
parses. Registered here as deterministic functions on each TAP connection, they make
the same ADQL run on SQLite as on PostgreSQL/pgSphere:

- a geometry value is a short text: ``P lon lat``, ``C lon lat r``, ``B lon1 lat1 lon2
  lat2`` (south-west and north-east corners), ``Y lon lat lon lat ...`` (a polygon),
  angles in radians as pgSphere has them; ``spoly('{(1d,2d),...}')`` and the STC-S
  text of ``s_region`` (``POLYGON ICRS ...``, ``CIRCLE ICRS ...``, degrees) are read too;
- ``srcontainsl(a, b)`` (a inside b), ``soverlaps(a, b)``, ``sdist(p, q)`` (radians),
  ``sarea(x)`` (square degrees) answer 1/0, a number, or NULL when an argument is NULL.

Exact on the sphere for points in circles, boxes and polygons (edges are great-circle
arcs, as in pgSphere) and for circle/circle; circle/polygon and polygon/polygon overlap
test vertices and edges. Parsed constants are cached, so a cone costs two small Python
calls per candidate row (the executor's declination band keeps candidates few).
"""

from __future__ import annotations

import math
import re
import sqlite3
from functools import lru_cache

Vec = tuple[float, float, float]
Geom = tuple  # ("P", lon, lat) | ("C", lon, lat, r) | ("B", ...) | ("Y", [(lon, lat), ...])

_NUMS = re.compile(r"[-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?")


class GeometryError(ValueError):
    """A geometry value or combination these functions do not handle."""


def _vec(lon: float, lat: float) -> Vec:
    c = math.cos(lat)
    return (c * math.cos(lon), c * math.sin(lon), math.sin(lat))


def _dot(a: Vec, b: Vec) -> float:
    return a[0] * b[0] + a[1] * b[1] + a[2] * b[2]


def _cross(a: Vec, b: Vec) -> Vec:
    return (a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0])


def _angle(a: Vec, b: Vec) -> float:
    """Angle between unit vectors (atan2 form: exact for tiny and large angles)."""
    c = _cross(a, b)
    return math.atan2(math.sqrt(_dot(c, c)), _dot(a, b))


@lru_cache(maxsize=4096)
def parse_geometry(text: str) -> Geom:
    """A geometry text (ours, pgSphere's spoly literal, or STC-S in degrees)."""
    head = text[:1]
    if head in ("P", "C", "B", "Y") and text[1:2] == " ":
        nums = [float(x) for x in text[2:].split()]
        if head == "Y":
            return ("Y", tuple(zip(nums[0::2], nums[1::2], strict=True)))
        return (head, *nums)
    upper = text.lstrip().upper()
    if upper.startswith("{"):  # spoly('{(10.0d,10.0d),...}'): degrees
        nums = [math.radians(float(x)) for x in _NUMS.findall(text)]
        return ("Y", tuple(zip(nums[0::2], nums[1::2], strict=True)))
    for kind in ("POLYGON", "CIRCLE", "POSITION", "BOX"):
        if upper.startswith(kind):
            nums = [float(x) for x in _NUMS.findall(upper[len(kind) :])]
            if kind == "POLYGON" and len(nums) >= 6:
                pts = [math.radians(x) for x in nums[: len(nums) // 2 * 2]]
                return ("Y", tuple(zip(pts[0::2], pts[1::2], strict=True)))
            if kind == "CIRCLE" and len(nums) >= 3:
                return ("C", *(math.radians(x) for x in nums[:3]))
            if kind == "POSITION" and len(nums) >= 2:
                return ("P", *(math.radians(x) for x in nums[:2]))
            if kind == "BOX" and len(nums) >= 4:  # STC-S: centre and full sizes
                ra, dec, w, h = (math.radians(x) for x in nums[:4])
                return ("B", ra - w / 2, dec - h / 2, ra + w / 2, dec + h / 2)
    raise GeometryError(f"not a geometry: {text[:60]!r}")


def _geom(value: object) -> Geom | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise GeometryError(f"not a geometry: {value!r}")
    return parse_geometry(value)


# ---------------------------------------------------------------- constructors


def spoint(lon: float | None, lat: float | None) -> str | None:
    if lon is None or lat is None:
        return None
    return f"P {float(lon)!r} {float(lat)!r}"


def scircle(center: str | None, radius: float | None) -> str | None:
    p = _geom(center)
    if p is None or radius is None:
        return None
    if p[0] != "P":
        raise GeometryError("the centre of a CIRCLE must be a POINT")
    return f"C {p[1]!r} {p[2]!r} {float(radius)!r}"


def sbox(sw: str | None, ne: str | None) -> str | None:
    a, b = _geom(sw), _geom(ne)
    if a is None or b is None:
        return None
    return f"B {a[1]!r} {a[2]!r} {b[1]!r} {b[2]!r}"


def spoly(text: str | None) -> str | None:
    g = _geom(text)
    if g is None:
        return None
    if g[0] != "Y" or len(g[1]) < 3:
        raise GeometryError("a POLYGON needs at least three vertices")
    return "Y " + " ".join(f"{lon!r} {lat!r}" for lon, lat in g[1])


# ---------------------------------------------------------------- predicates


def _in_circle(v: Vec, c: Geom) -> bool:
    return _angle(v, _vec(c[1], c[2])) <= c[3] + 1e-12


def _in_box(lon: float, lat: float, b: Geom) -> bool:
    lon1, lat1, lon2, lat2 = b[1:]
    if not (lat1 <= lat <= lat2):
        return False
    two_pi = 2 * math.pi
    lon, lon1, lon2 = lon % two_pi, lon1 % two_pi, lon2 % two_pi
    return lon1 <= lon <= lon2 if lon1 <= lon2 else (lon >= lon1 or lon <= lon2)


@lru_cache(maxsize=1024)
def _poly_vecs(poly: Geom) -> tuple[Vec, ...]:
    return tuple(_vec(lon, lat) for lon, lat in poly[1])


@lru_cache(maxsize=1024)
def _poly_centre(poly: Geom) -> Vec:
    vs = _poly_vecs(poly)
    return (sum(v[0] for v in vs), sum(v[1] for v in vs), sum(v[2] for v in vs))


def _in_polygon(v: Vec, poly: Geom) -> bool:
    """Winding number on the sphere (the signed angles the edges subtend at ``v``), on
    the polygon's side of the sphere: a polygon (smaller than a hemisphere, as pgSphere
    requires) winds around the far side's points too."""
    if _dot(v, _poly_centre(poly)) <= 0:
        return False
    vs = _poly_vecs(poly)
    total = 0.0
    for i, a in enumerate(vs):
        b = vs[(i + 1) % len(vs)]
        total += math.atan2(_dot(v, _cross(a, b)), _dot(a, b) - _dot(v, a) * _dot(v, b))
    return abs(total) > math.pi


def _point_in(p: Geom, region: Geom) -> bool:
    v = _vec(p[1], p[2])
    kind = region[0]
    if kind == "C":
        return _in_circle(v, region)
    if kind == "B":
        return _in_box(p[1], p[2], region)
    if kind == "Y":
        return _in_polygon(v, region)
    if kind == "P":
        return _angle(v, _vec(region[1], region[2])) < 1e-12
    raise GeometryError(f"unknown geometry {kind}")


def _box_polygon(b: Geom) -> Geom:
    lon1, lat1, lon2, lat2 = b[1:]
    return ("Y", ((lon1, lat1), (lon2, lat1), (lon2, lat2), (lon1, lat2)))


def _vertices(g: Geom) -> tuple[tuple[float, float], ...]:
    if g[0] == "Y":
        return g[1]
    if g[0] == "B":
        return _box_polygon(g)[1]
    raise GeometryError("not a polygon")


def _arc_distance(v: Vec, a: Vec, b: Vec) -> float:
    """Angular distance from ``v`` to the great-circle arc a→b."""
    n = _cross(a, b)
    nn = math.sqrt(_dot(n, n))
    if nn > 0:
        n = (n[0] / nn, n[1] / nn, n[2] / nn)
        # the projection of v on the great circle, if it falls between a and b
        d = _dot(v, n)
        proj = (v[0] - d * n[0], v[1] - d * n[1], v[2] - d * n[2])
        if _dot(_cross(a, proj), n) >= 0 and _dot(_cross(proj, b), n) >= 0:
            return abs(math.asin(max(-1.0, min(1.0, d))))
    return min(_angle(v, a), _angle(v, b))


def _arcs_cross(a1: Vec, a2: Vec, b1: Vec, b2: Vec) -> bool:
    na, nb = _cross(a1, a2), _cross(b1, b2)
    t = _cross(na, nb)
    if _dot(t, t) == 0:
        return False
    for x in (t, (-t[0], -t[1], -t[2])):
        on_a = _dot(_cross(a1, x), na) >= 0 and _dot(_cross(x, a2), na) >= 0
        on_b = _dot(_cross(b1, x), nb) >= 0 and _dot(_cross(x, b2), nb) >= 0
        if on_a and on_b:
            return True
    return False


def _contains(inner: Geom, outer: Geom) -> bool:
    if inner[0] == "P":
        return _point_in(inner, outer)
    if inner[0] == "C" and outer[0] == "C":
        return _angle(_vec(inner[1], inner[2]), _vec(outer[1], outer[2])) + inner[3] <= outer[3]
    if inner[0] in ("Y", "B") and outer[0] in ("C", "Y", "B"):
        return all(_point_in(("P", lon, lat), outer) for lon, lat in _vertices(inner))
    raise GeometryError(f"CONTAINS of a {_NAMES[inner[0]]} in a {_NAMES[outer[0]]}")


def _overlaps(a: Geom, b: Geom) -> bool:
    if a[0] == "P":
        return _point_in(a, b)
    if b[0] == "P":
        return _point_in(b, a)
    if a[0] == "C" and b[0] == "C":
        return _angle(_vec(a[1], a[2]), _vec(b[1], b[2])) <= a[3] + b[3]
    if a[0] != "C" and b[0] == "C":
        a, b = b, a
    if a[0] == "C":  # circle and polygon/box
        centre = _vec(a[1], a[2])
        if _point_in(("P", a[1], a[2]), b):
            return True
        vs = [_vec(lon, lat) for lon, lat in _vertices(b)]
        return any(
            _arc_distance(centre, vs[i], vs[(i + 1) % len(vs)]) <= a[3] for i in range(len(vs))
        )
    va, vb = _vertices(a), _vertices(b)
    if any(_point_in(("P", *p), b) for p in va) or any(_point_in(("P", *p), a) for p in vb):
        return True
    xa = [_vec(*p) for p in va]
    xb = [_vec(*p) for p in vb]
    return any(
        _arcs_cross(xa[i], xa[(i + 1) % len(xa)], xb[j], xb[(j + 1) % len(xb)])
        for i in range(len(xa))
        for j in range(len(xb))
    )


_NAMES = {"P": "POINT", "C": "CIRCLE", "B": "BOX", "Y": "POLYGON"}


def srcontainsl(inner: str | None, outer: str | None) -> int | None:
    a, b = _geom(inner), _geom(outer)
    if a is None or b is None:
        return None
    return int(_contains(a, b))


def soverlaps(a: str | None, b: str | None) -> int | None:
    x, y = _geom(a), _geom(b)
    if x is None or y is None:
        return None
    return int(_overlaps(x, y))


def sdist(a: str | None, b: str | None) -> float | None:
    x, y = _geom(a), _geom(b)
    if x is None or y is None:
        return None
    if x[0] != "P" or y[0] != "P":
        raise GeometryError("DISTANCE takes two POINTs")
    return _angle(_vec(x[1], x[2]), _vec(y[1], y[2]))


def sarea(value: str | None) -> float | None:
    """Area in square degrees (ADQL's AREA)."""
    g = _geom(value)
    if g is None:
        return None
    sq = (180 / math.pi) ** 2
    if g[0] == "P":
        return 0.0
    if g[0] == "C":
        return 2 * math.pi * (1 - math.cos(g[3])) * sq
    vs = [_vec(lon, lat) for lon, lat in _vertices(g)]
    # spherical excess by fan triangulation from the first vertex (convex polygons)
    total = 0.0
    for i in range(1, len(vs) - 1):
        a, b, c = vs[0], vs[i], vs[i + 1]
        total += 2 * math.atan2(
            abs(_dot(a, _cross(b, c))), 1 + _dot(a, b) + _dot(b, c) + _dot(c, a)
        )
    return total * sq


# ---------------------------------------------------------------- other ADQL functions


def _truncate(x: float | None, n: int | None = 0) -> float | None:
    if x is None:
        return None
    f = 10.0 ** int(n or 0)
    return math.trunc(x * f) / f


def _log(x: float | None) -> float | None:
    return None if x is None or x <= 0 else math.log(x)


def _cot(x: float | None) -> float | None:
    return None if x is None or math.tan(x) == 0 else 1 / math.tan(x)


def register(conn: sqlite3.Connection) -> None:
    """Register every function above on a SQLite connection (deterministic)."""
    for name, fn, nargs in (
        ("spoint", spoint, 2),
        ("scircle", scircle, 2),
        ("sbox", sbox, 2),
        ("spoly", spoly, 1),
        ("srcontainsl", srcontainsl, 2),
        ("soverlaps", soverlaps, 2),
        ("sdist", sdist, 2),
        ("sarea", sarea, 1),
        ("truncate", _truncate, 2),
        ("truncate", _truncate, 1),
        ("log", _log, 1),  # ADQL LOG is natural (SQLite's log is base 10)
        ("cot", _cot, 1),
    ):
        conn.create_function(name, nargs, fn, deterministic=True)
    conn.create_function("rand", 0, _rand)


def _rand() -> float:
    import random

    return random.random()
