"""JSON request bodies parsed within limits: size and nesting depth, never a RecursionError.

Python's json module recurses once per nested object or array, so `{"a":` repeated 10,000 times
ends in RecursionError (a 500) rather than a parse error. The depth is counted first, with one
linear pass over the bytes, and a body nested deeper than MAX_DEPTH is refused before parsing.
"""

from __future__ import annotations

import json
import re
from typing import Any

from session_api.errors import PayloadTooLarge, ValidationFailed

MAX_DEPTH = 32  # far beyond any body the API takes (they are flat objects)
# Strings (escapes included; an unterminated one runs to the end, so the scan stays linear), and
# the brackets that open and close containers.
_TOKENS = re.compile(rb'"(?:[^"\\]|\\.?)*+(?:"|\Z)|[\[\]{}]', re.DOTALL)
_OPENERS = frozenset(b"[{")


def nesting_depth(raw: bytes) -> int:
    """How deep containers nest in `raw`, brackets inside strings not counted."""
    depth = deepest = 0
    for match in _TOKENS.finditer(raw):
        first = match.group()[0]
        if first in _OPENERS:
            depth += 1
            deepest = max(deepest, depth)
        elif first != ord('"'):
            depth -= 1
    return deepest


def loads_limited(raw: bytes, *, max_bytes: int, max_depth: int = MAX_DEPTH) -> Any:
    """Parse a JSON body: 413 payload_too_large beyond `max_bytes`, 422 validation_error when
    it is not JSON or nests deeper than `max_depth`."""
    if len(raw) > max_bytes:
        raise PayloadTooLarge(f"JSON body exceeds {max_bytes // 1024} KB.")
    if nesting_depth(raw) > max_depth:
        raise ValidationFailed(f"JSON body nests deeper than {max_depth} levels.")
    try:
        return json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise ValidationFailed("Body is not valid JSON.") from exc
