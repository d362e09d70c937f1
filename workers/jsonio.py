"""JSON for the worker runner, straight from CPython's C accelerator ``_json``.

Why not :mod:`json`: it imports :mod:`re` (for the pure-Python fallback's patterns),
which imports ``enum``, ``functools`` and ``collections``; that is ~7 ms of CPU, and
a runner is one short-lived process per job, twenty of which start at once in each of
Slurm's scheduling waves on a small node (docs/benchmarks.md). The C scanner and
encoder behind :mod:`json` need none of it. Where ``_json`` is missing (another Python
implementation), :mod:`json` itself is used: same results, only slower to import.

Only what the runner exchanges is supported: objects with string keys, arrays,
strings, numbers, booleans and null. Output is compact and ASCII (``\\uXXXX``
escapes), exactly what ``json.dumps(obj, separators=(",", ":"))`` writes.
"""

from __future__ import annotations

try:
    import _json
except ImportError:  # pragma: no cover - not CPython
    _json = None  # type: ignore[assignment]

TYPE_CHECKING = False  # annotations only (see workers.jobdir)
if TYPE_CHECKING:
    from typing import Any

_WHITESPACE = " \t\n\r"
_CONSTANTS = {"-Infinity": float("-inf"), "Infinity": float("inf"), "NaN": float("nan")}


class _Context:
    """The attributes ``_json.make_scanner`` reads from a ``JSONDecoder``."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = _CONSTANTS.__getitem__
    memo: dict[str, str] = {}


def _skip(text: str, at: int) -> int:
    while at < len(text) and text[at] in _WHITESPACE:
        at += 1
    return at


def loads(text: str | bytes) -> Any:
    """Parse one JSON document; ``ValueError`` when it is not (trailing data included)."""
    if isinstance(text, bytes | bytearray):
        text = bytes(text).decode("utf-8-sig")
    if _json is None:  # pragma: no cover
        import json

        return json.loads(text)
    scan = _json.make_scanner(_Context)
    start = _skip(text, 0)
    try:
        value, end = scan(text, start)
    except StopIteration as stop:
        raise ValueError(f"not JSON: nothing valid at character {stop.value}") from None
    finally:
        _Context.memo.clear()
    end = _skip(text, end)
    if end != len(text):
        raise ValueError(f"not JSON: extra data at character {end}")
    return value


def _refuse(value: object) -> object:
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def dumps(value: Any) -> str:
    """Compact, ASCII-only JSON; ``TypeError`` for what JSON cannot hold."""
    if _json is None:  # pragma: no cover
        import json

        return json.dumps(value, separators=(",", ":"), allow_nan=False)
    encode = _json.make_encoder(
        {}, _refuse, _json.encode_basestring_ascii, None, ":", ",", False, False, False
    )
    return "".join(encode(value, 0))
