"""AgentRoutes: which channel (which router) each agent's packets leave through.

An agent is bound to the channel of its last registration, or of the router that
showed it after a restart; packets it makes before that wait in the agent.
Every packet leaving the backend is stamped here with the backend's time, and, with
a `WriteBarrier`, held until the database writes issued before it are committed.

Only agents at work are kept: once an agent's status is final (pushed by then), its
route is dropped and its packets go straight to the channel it last had, for the task
code that may still hold it (a verdict on its submission, a room still talking).
"""

from __future__ import annotations

from collections import deque

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from architect.backend.channel import Channel
from architect.backend.write_barrier import WriteBarrier
from architect.lifecycle import FINAL
from architect.protocol import Packet
from architect.tasks.agent import Agent, Outlet

log = Logger()


class AgentRoutes:
    def __init__(self, clock: IReactorTime, barrier: WriteBarrier | None = None) -> None:
        self.clock = clock
        self.channels: dict[str, Channel] = {}  # agent id -> where its packets go
        # With a barrier, a packet goes out once the writes issued before it are committed,
        # in the order sent: a page is never shown what a crash would take back.
        self.barrier = barrier
        self._held: deque[tuple[Channel, Packet, int]] = deque()
        # Several routers sharing the run through Redis reach every page: a packet whose
        # router is away goes through another open channel (tap.py sets it).
        self.any_open_channel = False
        self.all_channels: list[Channel] = []  # the handler's, for any_open_channel

    def send(self, channel: Channel, packet: Packet) -> None:
        packet.server_timestamp = self.clock.seconds()
        barrier = self.barrier
        if barrier is None:
            self._out(channel, packet)
            return
        mark = barrier.mark()
        if not self._held and barrier.is_durable(mark):
            self._out(channel, packet)
            return
        self._held.append((channel, packet, mark))
        if len(self._held) == 1:
            barrier.when_durable(mark).addCallback(self._release)

    def _out(self, channel: Channel, packet: Packet) -> None:
        if self.any_open_channel and not channel.is_open:
            channel = next((c for c in self.all_channels if c.is_open), channel)
        channel.send(packet)

    def _release(self, _: None) -> None:
        barrier = self.barrier
        assert barrier is not None
        while self._held and barrier.is_durable(self._held[0][2]):
            channel, packet, _mark = self._held.popleft()
            self._out(channel, packet)
        if self._held:
            barrier.when_durable(self._held[0][2]).addCallback(self._release)

    def send_for(self, agent_id: str, packet: Packet) -> None:
        channel = self.channels.get(agent_id)
        if channel is None:
            log.warn(
                "no channel for agent {agent_id}: dropped a {t} packet",
                agent_id=agent_id,
                t=packet.packet_type,
            )
            return
        self.send(channel, packet)

    def bind(self, agent: Agent, channel: Channel) -> None:
        """The agent's packets now go through `channel`."""
        if not agent.is_active:
            # Finished before its answer went out (its room failed at once, say): what it
            # said goes out, and there is no route to keep.
            agent.set_outlet(self._straight_to(channel))
            return
        previous = self.channels.get(agent.agent_id)
        self.channels[agent.agent_id] = channel
        if previous is None:
            agent_id = agent.agent_id
            agent.set_outlet(lambda packet: self.send_for(agent_id, packet))
            agent.add_status_listener(self._status_changed)
        elif previous is not channel:
            log.info(
                "agent {agent_id} moved from channel {old} to {new}",
                agent_id=agent.agent_id,
                old=previous.channel_id,
                new=channel.channel_id,
            )

    def _status_changed(self, agent: Agent, old: str, new: str) -> None:
        if new not in FINAL:
            return
        # The final status went out through the route before listeners hear of it.
        channel = self.channels.pop(agent.agent_id, None)
        if channel is not None:
            agent.set_outlet(self._straight_to(channel))

    def _straight_to(self, channel: Channel) -> Outlet:
        return lambda packet: self.send(channel, packet)

    def agents_answered_by(self, channel: Channel) -> list[str]:
        """The agents whose statuses `channel`'s router speaks for: those on it, and, with
        any_open_channel, those whose own router is away (every router knows them all)."""
        if not self.any_open_channel:
            return self.agents_on(channel)
        return [a for a, bound in self.channels.items() if bound is channel or not bound.is_open]

    def agents_on(self, channel: Channel) -> list[str]:
        """The ids of the agents at work whose packets go through `channel`."""
        return [agent_id for agent_id, bound in self.channels.items() if bound is channel]
