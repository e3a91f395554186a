"""A backend linked to several routers that share the run through Redis ([backend]
router_urls): registrations answered on their link, agents' packets through any open one."""

from __future__ import annotations

from pathlib import Path

import pytest

from architect.config import ConfigError, load_config
from architect.protocol import CLIENT_BOUND_LIVE_UPDATE, RETURN_STATUSES, Status
from tests.backend_fakes import FakeChannel
from tests.test_client_io import Backend, statuses_sent


def several() -> tuple[Backend, list[FakeChannel]]:
    b = Backend()
    two = b.add_channel("two")
    b.handler.routes.any_open_channel = True  # as tap.py sets it for router_urls
    return b, [b.channel, two]


def test_an_agent_whose_router_is_away_is_reached_through_another() -> None:
    b, (one, two) = several()
    details = b.register("r1", channel=one)
    agent_id = details["agent_id"]
    assert two.of_type("agent_details") == []  # answered on the link it came from
    one.opened = False  # its router died
    b.agent(agent_id).observe({"text": "hi"})
    [update] = two.of_type(CLIENT_BOUND_LIVE_UPDATE)
    assert update.subject_id == agent_id
    # The other router's word on it counts now: it knows every agent of the run.
    two.receive(RETURN_STATUSES, "mephisto", {agent_id: Status.DISCONNECT})
    assert b.agent(agent_id).status == Status.DISCONNECT


def test_without_the_cluster_setting_packets_wait_for_their_own_router() -> None:
    b = Backend()
    two = b.add_channel("two")
    agent_id = b.register("r1")["agent_id"]
    b.channel.opened = False
    b.agent(agent_id).observe({"text": "hi"})
    assert two.of_type(CLIENT_BOUND_LIVE_UPDATE) == []
    assert b.channel.of_type(CLIENT_BOUND_LIVE_UPDATE) != []  # kept by the channel
    two.receive(RETURN_STATUSES, "mephisto", {agent_id: Status.DISCONNECT})
    assert b.agent(agent_id).status == Status.IN_TASK


def test_losing_one_router_for_good_disconnects_no_one_while_another_is_open() -> None:
    b, (one, two) = several()
    agent_id = b.register("r1", channel=one)["agent_id"]
    one.opened = False
    b.handler.channel_lost(one)
    assert b.agent(agent_id).status == Status.IN_TASK
    two.opened = False
    b.handler.channel_lost(one)
    assert b.agent(agent_id).status == Status.DISCONNECT
    assert statuses_sent(one, agent_id) == [Status.IN_TASK]


def write(tmp_path: Path, backend: str) -> Path:
    path = tmp_path / "backend.ini"
    path.write_text(f"[backend]\nmode = remote\n{backend}")
    return path


def test_router_urls_in_the_config(tmp_path: Path) -> None:
    text = "router_urls = ws://10.0.0.1:3000/, ws://10.0.0.2:3000/\n  wss://r3.example/\n"
    backend = load_config(write(tmp_path, text)).backend
    assert backend.routers == ("ws://10.0.0.1:3000/", "ws://10.0.0.2:3000/", "wss://r3.example/")
    one = load_config(write(tmp_path, "router_url = ws://h:1/\n")).backend
    assert one.routers == ("ws://h:1/",)


@pytest.mark.parametrize(
    "text, problem",
    [
        ("router_urls = ws://a/ http://b/\n", "must start with ws://"),
        ("router_urls = ws://a/ ws://a/\n", "twice"),
        ("router_url = ws://a/\nrouter_urls = ws://b/\n", "not both"),
        ("router_urls =\n", "required"),
        ("router_urls = " + " ".join(f"ws://r{n}/" for n in range(65)) + "\n", "at most 64"),
    ],
)
def test_bad_router_urls_are_refused(tmp_path: Path, text: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=problem):
        load_config(write(tmp_path, text))
