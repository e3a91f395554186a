"""The agent and unit life cycle: which statuses are active, final, counted, and what a
status change does to the agent's unit. Every rule about statuses lives here.

An agent is one worker's seat: a *unit* agent holds a unit; an *onboarding* agent
holds none and only decides whether its worker may go on to units. Its status is
one of `protocol.Status` (exact wire strings); a unit is `available`, `reserved`
(by the agent working on it) or `completed`.

    none/accepted ─► onboarding ─► approved | rejected | expired ...   (onboarding agent)
    none/accepted ─► waiting ─► in task ─► completed ─► approved | soft_rejected | rejected
                            └──────────┴─► disconnect | timeout | expired | returned
                                           | partner disconnect | mephisto disconnect
"""

from __future__ import annotations

from architect.protocol import Status


class AgentKind:
    """What an agent is for. Exact strings, as stored."""

    UNIT = "unit"
    ONBOARDING = "onboarding"

    ALL = frozenset({UNIT, ONBOARDING})


class UnitStatus:
    """Where a unit stands. Exact strings, as stored."""

    AVAILABLE = "available"
    RESERVED = "reserved"
    COMPLETED = "completed"

    ALL = frozenset({AVAILABLE, RESERVED, COMPLETED})


# An agent in one of these may still act; losing its socket for good is a disconnect.
ACTIVE = frozenset(
    {Status.NONE, Status.ACCEPTED, Status.ONBOARDING, Status.WAITING, Status.IN_TASK}
)
# Any other status is final: the agent will not act again.
FINAL = Status.ALL - ACTIVE
# Heartbeat silence only counts against an agent that is working.
HEARTBEAT_WATCHED = frozenset({Status.ONBOARDING, Status.WAITING, Status.IN_TASK})
# A unit agent in one of these has done its unit: the unit stays completed.
DONE = frozenset({Status.COMPLETED, Status.APPROVED, Status.SOFT_REJECTED, Status.REJECTED})
# A unit counts against a worker's maximum_units_per_worker while its agent is in one of these.
COUNTED = ACTIVE | DONE
# Leaving a live room in one of these lets the partners down; completing does not, nor
# being told that a partner left.
LEAVING = FINAL - {Status.COMPLETED, Status.PARTNER_DISCONNECT}
# Statuses a backend pushes to a router for a working agent (`none` is the router's own
# default for an agent it has not been told about).
PUSHED_ACTIVE = ACTIVE - {Status.NONE}


def is_active(status: str) -> bool:
    return status in ACTIVE


def unit_status_after(old: str, new: str, return_units: bool = True) -> str | None:
    """What a unit agent's move from `old` to `new` does to its unit: `completed`,
    `available` (back in the pool), or None (it stays as it is).

    A unit whose agent left unfinished (disconnect, return, expiry...) goes back to
    the pool, unless the task keeps such units out (`return_units = off`); a unit done
    once stays done whatever its agent's review says.
    """
    if new in DONE:
        return UnitStatus.COMPLETED
    if new in FINAL and old not in DONE and return_units:
        return UnitStatus.AVAILABLE
    return None


def unit_status_if_lost() -> str:
    """A unit whose agent never could work on it (its task data could not be made) or
    cannot carry on after a restart goes back to the pool, whatever `return_units` says:
    its worker did nothing wrong."""
    return UnitStatus.AVAILABLE
