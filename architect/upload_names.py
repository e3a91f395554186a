"""The names the router stores uploads under, and whose upload a name is.

A stored name is 32 lowercase hex digits and a short plain extension: the first
8 digits say whose upload it is (a hash of the agent's id), the other 24 are
random. So no name a worker sends becomes a path, and a submission can only
bring along files its own agent uploaded: the backend takes a name only if it
carries the submitting agent's mark.
"""

from __future__ import annotations

import hashlib
import re
import uuid

STORED_NAME = re.compile(r"[0-9a-f]{32}(\.[A-Za-z0-9]{1,10})?")
EXTENSION = re.compile(r"\.[A-Za-z0-9]{1,10}$")
_MARK_DIGITS = 8


def owner_mark(agent_id: str) -> str:
    return hashlib.sha256(agent_id.encode("utf-8")).hexdigest()[:_MARK_DIGITS]


def new_upload_name(agent_id: str, original_name: str) -> str:
    """A fresh stored name for a file `agent_id` uploads as `original_name`."""
    match = EXTENSION.search(original_name)
    random_part = uuid.uuid4().hex[: 32 - _MARK_DIGITS]
    return owner_mark(agent_id) + random_part + (match.group(0).lower() if match else "")


def mark_of(name: str) -> str:
    """The owner mark a stored name carries."""
    return name[:_MARK_DIGITS]


def is_stored_name(name: str) -> bool:
    return STORED_NAME.fullmatch(name) is not None


def is_upload_of(name: str, agent_id: str) -> bool:
    """Whether `name` is a stored name of a file `agent_id` uploaded."""
    return is_stored_name(name) and mark_of(name) == owner_mark(agent_id)
