"""Channels without sockets: the in-process channel against a real hub, and the
WebsocketChannel's giving up, with a task.Clock."""

from __future__ import annotations

from typing import Any, cast
from urllib.parse import parse_qs, urlsplit

from twisted.internet.defer import Deferred, fail
from twisted.internet.interfaces import IProtocolFactory, IStreamClientEndpoint
from twisted.internet.task import Clock
from zope.interface import implementer

from architect.backend.channel import Channel
from architect.backend.client_io import ClientIOHandler
from architect.backend.websocket_channel import BackendSocket, WebsocketChannel, url_with_token
from architect.config import RouterConfig
from architect.embedded import InProcessChannel
from architect.protocol import (
    ALIVE,
    CLIENT_BOUND_LIVE_UPDATE,
    MEPHISTO_BOUND_LIVE_UPDATE,
    SUBMIT_UNIT,
    UPDATE_STATUS,
    Packet,
    Status,
)
from architect.router.errors import NoBackend
from architect.router.hub import RouterHub
from tests.fakes import FakeLink
from tests.memory_backend import MemoryStore, MemoryWorkerPool


class Embedded:
    """A hub and a backend linked in process, on one Clock."""

    def __init__(self) -> None:
        self.clock = Clock()
        self.hub = RouterHub(self.clock, RouterConfig())
        self.pool = MemoryWorkerPool(self.clock, [{"text": "one"}, {"text": "two"}])
        self.store = MemoryStore()
        self.handler = ClientIOHandler(self.clock, self.pool, self.store)
        self.channel = InProcessChannel(self.hub, self.clock)
        self.handler.add_channel(self.channel)

    def flush(self) -> None:
        for _ in range(10):
            self.clock.advance(0)

    def request_agent(self, worker: str = "w1") -> dict[str, Any]:
        answers: list[dict[str, Any]] = []
        self.hub.request_agent({"worker_name": worker}, None, None).addCallback(answers.append)
        self.flush()
        assert len(answers) == 1
        return answers[0]


def test_embedded_registration_live_updates_and_submission() -> None:
    e = Embedded()
    e.channel.open()
    assert e.hub.backend is e.channel.link
    answer = e.request_agent()
    agent_id = answer["data"]["agent_id"]
    assert answer["data"]["init_task_data"] == {"text": "one"}
    browser = FakeLink("browser")
    e.hub.link_packet(browser, Packet(ALIVE, agent_id, {}))
    e.flush()
    assert e.hub.agents.statuses()[agent_id] == Status.IN_TASK
    # (the backend may push it twice: the router's first statuses predate the agent)
    assert {p.data["status"] for p in browser.of_type(UPDATE_STATUS)} == {Status.IN_TASK}

    agent = e.pool.get_agent(agent_id)
    assert agent is not None
    got: list[Any] = []
    agent.act(1).addCallback(got.append)
    e.hub.link_packet(browser, Packet(MEPHISTO_BOUND_LIVE_UPDATE, agent_id, {"update_id": "u1"}))
    e.flush()
    assert got == [{"update_id": "u1"}]
    agent.observe({"text": "hello"})
    e.flush()
    assert [p.data["text"] for p in browser.of_type(CLIENT_BOUND_LIVE_UPDATE)] == ["hello"]

    e.hub.submit(SUBMIT_UNIT, agent_id, {"answer": 1}, None, None)
    e.flush()
    assert [s.data for s in e.store.of_agent(agent_id)] == [{"answer": 1}]
    assert e.hub.agents.statuses()[agent_id] == Status.COMPLETED


def test_delivery_is_in_a_later_turn_in_order_and_copied() -> None:
    e = Embedded()
    received: list[Packet] = []
    e.channel.open()
    e.channel.on_message = lambda channel, packet: received.append(packet)
    browser = FakeLink("browser")
    e.hub.agents.ensure("a1")  # as if the backend had named it
    e.hub.link_packet(browser, Packet(ALIVE, "a1", {}))
    data = {"nested": {"n": 0}}
    for n in range(3):
        data["nested"]["n"] = n
        e.channel.send(Packet(CLIENT_BOUND_LIVE_UPDATE, "a1", data))
    assert browser.of_type(CLIENT_BOUND_LIVE_UPDATE) == []  # not re-entrant
    e.flush()
    sent = browser.of_type(CLIENT_BOUND_LIVE_UPDATE)
    assert [p.data["nested"]["n"] for p in sent] == [0, 1, 2]
    data["nested"]["n"] = 99
    assert sent[0].data["nested"]["n"] == 0

    received.clear()  # the answer to the request_statuses sent on open
    incoming: dict[str, Any] = {"update_id": "u1", "list": [1]}
    e.hub.link_packet(browser, Packet(MEPHISTO_BOUND_LIVE_UPDATE, "a1", incoming))
    assert received == []
    e.flush()
    assert received[0].data == incoming
    assert received[0].data is not incoming
    incoming["list"].append(2)
    assert received[0].data["list"] == [1]


def test_packets_sent_while_closed_go_out_on_open() -> None:
    e = Embedded()
    e.channel.open()
    browser = FakeLink("browser")
    e.hub.agents.ensure("a1")  # as if the backend had named it
    e.hub.link_packet(browser, Packet(ALIVE, "a1", {}))
    e.channel.close()
    assert e.hub.backend is None
    e.channel.send(Packet(CLIENT_BOUND_LIVE_UPDATE, "a1", {"n": 1}))
    e.flush()
    assert browser.of_type(CLIENT_BOUND_LIVE_UPDATE) == []
    e.channel.open()
    e.flush()
    assert [p.data["n"] for p in browser.of_type(CLIENT_BOUND_LIVE_UPDATE)] == [1]


def test_another_backend_taking_over_is_a_catastrophic_loss() -> None:
    e = Embedded()
    lost: list[Channel] = []
    e.channel.open()
    e.channel.on_catastrophic_loss = lost.append
    e.hub.backend_connected(FakeLink("other backend"))
    assert lost == [e.channel]
    assert not e.channel.is_open


# --- WebsocketChannel, no sockets ---


@implementer(IStreamClientEndpoint)
class RefusingEndpoint:
    def __init__(self) -> None:
        self.attempts = 0

    def connect(self, factory: IProtocolFactory) -> Deferred[Any]:
        self.attempts += 1
        return fail(ConnectionRefusedError())


def test_url_with_token() -> None:
    url = url_with_token("ws://router.example:3000/?x=1&token=old", "s3cr&t")
    parts = urlsplit(url)
    assert parse_qs(parts.query) == {"x": ["1"], "token": ["s3cr&t"]}
    assert url_with_token("ws://h:1", "t") == "ws://h:1/?token=t"
    assert url_with_token("ws://h:1/", "") == "ws://h:1/"


def test_websocket_channel_sends_the_token_as_bearer_header_too() -> None:
    channel = WebsocketChannel(
        Clock(), "ws://127.0.0.1:9/", token="tok", endpoint=RefusingEndpoint()
    )
    assert channel.factory.headers == {"Authorization": "Bearer tok"}
    assert channel.factory.resource == "/?token=tok"
    bare = WebsocketChannel(Clock(), "ws://127.0.0.1:9/", endpoint=RefusingEndpoint())
    assert bare.factory.headers == {}


def test_websocket_channel_reports_catastrophic_loss_after_giveup_and_keeps_trying() -> None:
    clock = Clock()
    endpoint = RefusingEndpoint()
    channel = WebsocketChannel(
        clock,
        "ws://127.0.0.1:9/",
        reconnect_giveup=10.0,
        retry_policy=lambda attempt: 1.0,
        endpoint=endpoint,
    )
    lost: list[Channel] = []
    channel.on_catastrophic_loss = lost.append
    channel.open()
    channel.send(Packet(UPDATE_STATUS, "a1", {"status": "in task"}))
    assert channel.unsent[0].subject_id == "a1"
    clock.advance(9.999)
    assert lost == []
    clock.advance(0.001)
    assert lost == [channel]
    for _ in range(100):
        clock.advance(1)
    assert lost == [channel]  # once per outage
    assert endpoint.attempts > 100
    closed: list[None] = []
    channel.close().addCallback(closed.append)
    assert closed == [None]
    attempts = endpoint.attempts
    clock.advance(100)
    assert endpoint.attempts == attempts


class SlowStore(MemoryStore):
    """A store whose commits the test completes (or fails) by hand."""

    def __init__(self) -> None:
        super().__init__()
        self.commits: list[Deferred[None]] = []

    def save_unit_submission(
        self,
        agent_id: str,
        worker_id: str | None,
        data: dict[str, Any],
        dedupe_key: Any = None,
        completes: bool = False,
    ) -> Deferred[None]:
        committed: Deferred[None] = Deferred()
        self.commits.append(committed)
        return committed.addCallback(
            lambda _: super(SlowStore, self).save_unit_submission(agent_id, worker_id, data)
        )


def test_embedded_submission_is_acknowledged_only_once_stored() -> None:
    e = Embedded()
    store = e.handler.store = SlowStore()
    e.channel.open()
    agent_id = e.request_agent()["data"]["agent_id"]
    acks: list[Any] = []
    e.hub.submit(SUBMIT_UNIT, agent_id, {"answer": 1}, None, None).addBoth(acks.append)
    e.flush()
    assert acks == [] and len(store.commits) == 1  # handed over, not yet committed
    store.commits[0].callback(None)
    e.flush()
    assert acks == [None]
    assert [s.data for s in store.of_agent(agent_id)] == [{"answer": 1}]


def test_embedded_submission_that_cannot_be_stored_is_refused() -> None:
    e = Embedded()
    store = e.handler.store = SlowStore()
    e.channel.open()
    agent_id = e.request_agent()["data"]["agent_id"]
    acks: list[Any] = []
    e.hub.submit(SUBMIT_UNIT, agent_id, {"answer": 1}, None, None).addBoth(acks.append)
    e.flush()
    store.commits[0].errback(OSError("disk full"))
    e.flush()
    (failure,) = acks
    assert failure.check(NoBackend) and "please submit again" in str(failure.value)
    # The worker's retry is stored: the failed attempt did not count as done.
    e.hub.submit(SUBMIT_UNIT, agent_id, {"answer": 1}, None, None).addBoth(acks.append)
    e.flush()
    store.commits[1].callback(None)
    e.flush()
    assert acks[1] is None
    assert [s.data for s in store.of_agent(agent_id)] == [{"answer": 1}]


class OpenedSocket:
    """What WebsocketChannel uses of its BackendSocket once it is open."""

    extensions: frozenset[str] = frozenset()
    confirms = False

    def __init__(self) -> None:
        self.sent: list[Packet] = []

    def send_packet(self, packet: Packet) -> None:
        self.sent.append(packet)

    def sendClose(self, code: int, reason: str) -> None:
        pass


def opened_socket() -> BackendSocket:
    """An OpenedSocket where the channel takes its Autobahn socket: it keeps it, compares
    it and closes it, no more."""
    return cast(BackendSocket, OpenedSocket())


def test_websocket_channel_says_when_an_open_link_broke_but_not_when_it_closes() -> None:
    channel = WebsocketChannel(Clock(), "ws://127.0.0.1:9/", endpoint=RefusingEndpoint())
    lost: list[Channel] = []
    channel.on_lost = lost.append
    never_opened = opened_socket()
    channel._socket_closed(never_opened, 1006, "refused")
    assert lost == []  # a try that failed: nothing was lost
    socket = opened_socket()
    channel._socket_opened(socket)
    channel._socket_closed(socket, 1006, "gone")
    assert lost == [channel]
    again = opened_socket()
    channel._socket_opened(again)
    channel.close()
    channel._socket_closed(again, 1000, "backend stopping")
    assert lost == [channel]


def test_the_in_process_link_takes_the_events_extension() -> None:
    e = Embedded()
    e.channel.open()
    assert e.hub.backend_takes_events
    assert not e.hub.backend_confirms  # it confirms by being a ConfirmingLink instead


def test_packet_copies_share_nothing_mutable_whatever_the_data_holds() -> None:
    from collections import OrderedDict

    from architect.copies import json_copy

    deep = ["x"]
    in_tuple = [0]
    odd = OrderedDict(kept=[1])
    data = {
        "plain": [1, {"deep": deep}],
        "tuple": (in_tuple,),
        "ordered": odd,
        "n": 1.5,
        "s": "t",
        "none": None,
    }
    copied = json_copy(data)
    assert copied == data
    deep.append("y")
    in_tuple.append(1)
    odd["kept"].append(2)
    assert copied["plain"] == [1, {"deep": ["x"]}]
    assert copied["tuple"] == ([0],)
    assert copied["ordered"] == OrderedDict(kept=[1])


def test_a_packet_copy_keeps_every_field_and_shares_no_data() -> None:
    import attrs

    from architect.embedded import copy_packet

    # A value of its own for each field, so that a field the copy forgot shows.
    values: dict[str, Any] = {}
    for number, name in enumerate(attrs.fields_dict(Packet)):
        values[name] = {"kept": [number]} if name == "data" else f"v{number}"
    packet = Packet(**values)
    copied = copy_packet(packet)
    assert copied == packet
    assert copied.data is not packet.data and copied.data["kept"] is not packet.data["kept"]
