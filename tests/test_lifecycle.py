"""The life cycle's rules: what a unit agent's status change does to its unit."""

from __future__ import annotations

import pytest

from architect.lifecycle import (
    ACTIVE,
    FINAL,
    LEAVING,
    UnitStatus,
    unit_status_after,
    unit_status_if_lost,
)
from architect.protocol import Status


@pytest.mark.parametrize(
    ("old", "new", "return_units", "unit"),
    [
        (Status.IN_TASK, Status.COMPLETED, True, UnitStatus.COMPLETED),
        (Status.IN_TASK, Status.COMPLETED, False, UnitStatus.COMPLETED),
        (Status.COMPLETED, Status.APPROVED, True, UnitStatus.COMPLETED),
        (Status.COMPLETED, Status.SOFT_REJECTED, True, UnitStatus.COMPLETED),
        (Status.IN_TASK, Status.DISCONNECT, True, UnitStatus.AVAILABLE),
        (Status.WAITING, Status.RETURNED, True, UnitStatus.AVAILABLE),
        (Status.IN_TASK, Status.TIMEOUT, True, UnitStatus.AVAILABLE),
        (Status.IN_TASK, Status.DISCONNECT, False, None),  # return_units = off
        (Status.COMPLETED, Status.EXPIRED, True, None),  # done once: stays done
        (Status.WAITING, Status.IN_TASK, True, None),
        (Status.NONE, Status.IN_TASK, True, None),
    ],
)
def test_what_a_status_change_does_to_the_unit(
    old: str, new: str, return_units: bool, unit: str | None
) -> None:
    assert unit_status_after(old, new, return_units) == unit


def test_a_lost_agent_always_frees_its_unit() -> None:
    assert unit_status_if_lost() == UnitStatus.AVAILABLE


def test_leaving_a_room_excludes_completing_and_being_told_of_a_partner() -> None:
    assert LEAVING <= FINAL and not LEAVING & ACTIVE
    assert Status.COMPLETED not in LEAVING and Status.PARTNER_DISCONNECT not in LEAVING
    assert Status.DISCONNECT in LEAVING and Status.RETURNED in LEAVING
