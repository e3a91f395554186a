"""json_copy: the copy each side keeps of data it hands over or is handed (task data,
live updates, packets across the in-process link), so no two parts share a mutable
dict. Such data is JSON-shaped nearly always; copying that shape directly is several
times faster than copy.deepcopy, which stays the way for anything else."""

from __future__ import annotations

import copy
from typing import Any

_IMMUTABLE = frozenset({str, int, float, bool, type(None)})


def json_copy(value: Any) -> Any:
    """A deep copy of `value`: dicts, lists and immutable scalars copied as they are, any
    other value (a tuple, an OrderedDict, a task's own object) by copy.deepcopy."""
    kind = type(value)
    if kind is dict:
        return {key: json_copy(item) for key, item in value.items()}
    if kind is list:
        return [json_copy(item) for item in value]
    if kind in _IMMUTABLE:
        return value
    return copy.deepcopy(value)
