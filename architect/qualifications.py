"""Qualification requirements: a name, a comparator and a value, checked against a worker.

Pure: parsing (for the config) and checking (for the registration pipeline), no I/O.

A worker who does not hold the qualification meets only `not exists`. The
ordering comparators need numbers on both sides; `in` and `not in` take a
list of values. A worker value of the wrong type fails the requirement.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

import attrs

EXISTS = "exists"
# A worker holding this qualification is refused every registration (architect admin block).
BLOCKED = "architect_blocked"
NOT_EXISTS = "not exists"
_NUMERIC: dict[str, Callable[[float, float], bool]] = {
    "<": lambda held, wanted: held < wanted,
    "<=": lambda held, wanted: held <= wanted,
    ">": lambda held, wanted: held > wanted,
    ">=": lambda held, wanted: held >= wanted,
}
COMPARATORS = (EXISTS, NOT_EXISTS, "==", "!=", *_NUMERIC, "in", "not in")


@attrs.frozen
class Requirement:
    name: str
    comparator: str
    value: Any = None

    def met_by(self, held: Mapping[str, Any]) -> bool:
        """Whether a worker holding these qualification values meets this requirement."""
        if self.name not in held:
            return self.comparator == NOT_EXISTS
        value = held[self.name]
        if self.comparator == EXISTS:
            return True
        if self.comparator == NOT_EXISTS:
            return False
        if self.comparator == "==":
            return bool(value == self.value)
        if self.comparator == "!=":
            return bool(value != self.value)
        if self.comparator in ("in", "not in"):
            return (value in self.value) == (self.comparator == "in")
        if not _is_number(value):
            return False
        return _NUMERIC[self.comparator](value, self.value)


def meets_all(requirements: tuple[Requirement, ...], held: Mapping[str, Any]) -> bool:
    return all(requirement.met_by(held) for requirement in requirements)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def parse_requirements(text: str) -> tuple[Requirement, ...]:
    """A JSON list of [name, comparator, value]; raise ValueError saying what is wrong."""
    if not text.strip():
        return ()
    try:
        raw = json.loads(text)
    except ValueError as e:
        raise ValueError(f"not valid JSON: {e}") from None
    if not isinstance(raw, list):
        raise ValueError("must be a JSON list of [name, comparator, value] lists")
    return tuple(_requirement(n, item) for n, item in enumerate(raw, 1))


def _requirement(n: int, item: Any) -> Requirement:
    where = f"requirement {n}"
    if not isinstance(item, list) or len(item) not in (2, 3):
        raise ValueError(f"{where} must be a list [name, comparator, value]")
    name, comparator, *rest = item
    if not isinstance(name, str) or not name:
        raise ValueError(f"{where}: the name must be a non-empty string")
    if comparator not in COMPARATORS:
        raise ValueError(f"{where}: {comparator!r} is not one of: {', '.join(COMPARATORS)}")
    if comparator in (EXISTS, NOT_EXISTS):
        return Requirement(name, comparator)
    if not rest:
        raise ValueError(f"{where}: {comparator!r} needs a value")
    value = rest[0]
    if comparator in _NUMERIC and not _is_number(value):
        raise ValueError(f"{where}: {comparator!r} needs a number, not {value!r}")
    if comparator in ("in", "not in") and not isinstance(value, list):
        raise ValueError(f"{where}: {comparator!r} needs a list of values")
    return Requirement(name, comparator, value)
