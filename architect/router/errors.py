"""What can go wrong with a worker's request, in the router's own terms.

The hub raises these; only the HTTP edge (`web.py`) knows which status code each
one is answered with.
"""

from __future__ import annotations


class RouterError(Exception):
    """A request that cannot be served; the message is shown to the caller."""


class BadRequest(RouterError):
    """The request is malformed."""


class Forbidden(RouterError):
    """The caller may not do this (only the backend may)."""


class NotFound(RouterError):
    """What the request names does not exist here."""


class UnknownAgent(NotFound):
    """The router never heard of this agent."""

    def __init__(self, message: str, agent_id: str | None = None) -> None:
        super().__init__(message)
        self.agent_id = agent_id  # which one (other routers may know it: architect/cluster/)


class Refused(RouterError):
    """The backend will never keep this (a submission after its agent expired)."""


class MethodNotAllowed(RouterError):
    """What the request names is there, but not to be acted on with this method."""


class TooLarge(RouterError):
    """The request's body is over the configured bound."""


class InsufficientStorage(RouterError):
    """The router has no room to keep this now (its upload folder, its disk)."""


class NoBackend(RouterError):
    """No backend can take the request now; the caller may try again."""


class Unconfirmed(NoBackend):
    """One of several routers journaled a submission its backend has not said it stored:
    the worker is to submit again; the journal still sends it (with its files, which stay)."""


class BackendTimeout(RouterError):
    """The backend did not answer in time."""


class Draining(NoBackend):
    """The router is stopping (a restart): the caller should come back to the next one."""

    retry_after = 5  # seconds, said in a Retry-After header
