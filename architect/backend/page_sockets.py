"""PageSockets: which router holds each agent's page socket, as the routers' connection
events say (protocol.EVENTS). With several routers an agent's packets may go through one
router while its page sits on another: the backend's `router_lost` is true only of the
pages on the router it lost.

Bounded by the open sockets: an entry goes at its socket's close, or when its router's
link breaks (its pages come back through another router, which says so)."""

from __future__ import annotations

from collections.abc import Sequence

from architect.backend.channel import Channel
from architect.connection_events import ConnectionEvent
from architect.connection_events import ConnectionEventKind as Kind

_OPENED = frozenset({Kind.SOCKET_OPEN, Kind.RELOAD})


class PageSockets:
    def __init__(self) -> None:
        self._holders: dict[str, Channel] = {}  # agent id -> the channel its socket is on

    def saw(self, channel: Channel, events: Sequence[ConnectionEvent]) -> None:
        """A router's batch of events, in the order they happened."""
        for event in events:
            if event.event in _OPENED:
                self._holders[event.agent_id] = channel
            elif event.event == Kind.SOCKET_CLOSE and self._holders.get(event.agent_id) is channel:
                del self._holders[event.agent_id]  # a close on another router moves nothing

    def lost(self, channel: Channel, routed: Sequence[str]) -> list[str]:
        """The agents whose pages `channel`'s broken link cut off: its sockets', and those
        routed through it whose socket no other router said it holds. Forgets its sockets."""
        on_it = [a for a, held in self._holders.items() if held is channel]
        for agent_id in on_it:
            del self._holders[agent_id]
        cut_off = [a for a in routed if a not in self._holders]
        return cut_off + [a for a in on_it if a not in set(cut_off)]
