"""The browser-session rules: the cookie's parsing, and who may act for an agent."""

from __future__ import annotations

from pathlib import Path

import pytest
from twisted.internet.task import Clock

from architect.config import RouterConfig
from architect.protocol import AGENT_DETAILS, ALIVE, REGISTER_AGENT, CloseCode, Packet, Status
from architect.router.errors import Forbidden
from architect.router.hub import RouterHub
from architect.router.sessions import COOKIE_NAME, is_session, new_session, session_in
from tests.fakes import FakeLink
from tests.test_hub import connect_backend, results

S1, S2 = new_session(), new_session()


def test_new_sessions_are_random_and_the_only_values_taken() -> None:
    made = {new_session() for _ in range(1000)}
    assert len(made) == 1000 and all(is_session(s) for s in made)
    assert session_in(f"{COOKIE_NAME}={S1}") == S1
    assert session_in(f"theme=dark; {COOKIE_NAME}={S1}; lang=fr") == S1


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "theme=dark",
        f"{COOKIE_NAME}=",
        f"{COOKIE_NAME}=short",
        f"{COOKIE_NAME}={S1}x",
        f"{COOKIE_NAME}={S1[:-1]}!",
        f'{COOKIE_NAME}="{S1[:-2]};"',
        f"{COOKIE_NAME}={'a' * 100_000}",
        "\x00\xff" * 1000 + COOKIE_NAME,
        f"x{COOKIE_NAME}={S1}",
    ],
)
def test_a_header_without_one_of_our_sessions_carries_none(header: str | None) -> None:
    assert session_in(header) is None


def hub_with_agent(
    tmp_path: Path, agent_id: str, session: str | None
) -> tuple[RouterHub, FakeLink]:
    hub = RouterHub(Clock(), RouterConfig(upload_dir=tmp_path, trust_loopback=True))
    backend = connect_backend(hub)
    got = results(hub.request_agent({"worker_name": "w"}, None, session))
    request = backend.of_type(REGISTER_AGENT)[-1]
    answer = {"request_id": request.data["request_id"], "agent_id": agent_id}
    hub.link_packet(backend, Packet(AGENT_DETAILS, request.subject_id, answer))
    assert got[0]["data"]["agent_id"] == agent_id
    return hub, backend


def test_an_agent_is_its_registering_sessions_alone(tmp_path: Path) -> None:
    hub, _ = hub_with_agent(tmp_path, "a-1", S1)
    hub.check_agent("a-1", S1)
    for other in (S2, None):
        with pytest.raises(Forbidden):
            hub.check_agent("a-1", other)
        link = FakeLink()
        hub.link_packet(link, Packet(ALIVE, "a-1"), session=other)
        assert link.close_code == CloseCode.NOT_YOURS and "a-1" not in hub.link_agents.values()
    mine = FakeLink()
    hub.link_packet(mine, Packet(ALIVE, "a-1"), session=S1)
    assert not mine.closed and hub.link_agents[mine] == "a-1"


def test_an_agent_carried_on_after_a_restart_is_the_first_claimants(tmp_path: Path) -> None:
    """A restarted router knows an agent but not its browser: the page that comes back
    first (the one that knows the agent id) has it from then on."""
    hub = RouterHub(Clock(), RouterConfig(upload_dir=tmp_path))
    hub.expect_agents({"a-1": Status.IN_TASK, "a-2": Status.IN_TASK}, grace=None)
    first = FakeLink()
    hub.link_packet(first, Packet(ALIVE, "a-1"), session=S1)
    assert not first.closed
    with pytest.raises(Forbidden):
        hub.check_agent("a-1", S2)
    hub.check_agent("a-2", S2)  # a submission claims too
    with pytest.raises(Forbidden):
        hub.check_agent("a-2", S1)


def test_without_binding_any_session_acts_for_any_agent(tmp_path: Path) -> None:
    hub = RouterHub(Clock(), RouterConfig(upload_dir=tmp_path, bind_agents_to_browser=False))
    hub.expect_agents({"a-1": Status.IN_TASK}, grace=None)
    for session in (S1, S2, None):
        hub.check_agent("a-1", session)
