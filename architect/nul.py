"""NUL characters: SQLite's text keeps them, PostgreSQL's cannot hold one.

So that what a worker sends comes out the same on both engines, a NUL is refused in the
names and ids the database keeps in columns of their own: at the router's edge (a 400),
in the backend (whichever router sent it), and by the storage engines themselves (a
StorageError: the last guard, the same on both). JSON is stored as text in which a NUL
is written as its escape (the six characters \\u0000), so task data keeps its NULs on
both engines.
"""

from __future__ import annotations

NUL = "\x00"


def holds_nul(value: object) -> bool:
    """Whether a string, or any string of a decoded JSON value (keys too), holds a NUL."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if NUL in item:
                return True
        elif isinstance(item, dict):
            stack.extend(item)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False
