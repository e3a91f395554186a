"""Helpers of the admin listener's tests: daemons with one, its metrics scraped and parsed,
its controls called, and workers registering and submitting as browsers do."""

from __future__ import annotations

import json
import time
from typing import Any

import attrs
import treq
from prometheus_client.parser import text_string_to_metric_families
from twisted.web.http_headers import Headers

from architect.config import AdminConfig, Config
from tests.clients import Browser
from tests.daemon import ANY_LOOPBACK_PORT, Daemon

ADMIN_TOKEN = "admin-test-token"


def with_admin(config: Config, token: str = ADMIN_TOKEN) -> Config:
    """`config` with its admin listener on a free loopback port."""
    return attrs.evolve(config, admin=AdminConfig(listen=ANY_LOOPBACK_PORT, admin_token=token))


def bearer(token: str = ADMIN_TOKEN) -> Headers:
    return Headers({"Authorization": [f"Bearer {token}"]})


async def scrape(
    daemon: Daemon, token: str = ADMIN_TOKEN
) -> dict[tuple[str, tuple[Any, ...]], float]:
    """The daemon's /metrics: {(sample name, sorted label pairs): value}."""
    response = await treq.get(f"{daemon.admin_url}/metrics", headers=bearer(token))
    assert response.code == 200, await response.text()
    assert response.headers.getRawHeaders("content-type")[0].startswith("text/plain")
    samples: dict[tuple[str, tuple[Any, ...]], float] = {}
    for family in text_string_to_metric_families(await response.text()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def sample(samples: dict[tuple[str, tuple[Any, ...]], float], name: str, **labels: str) -> float:
    """One sample's value (0 when absent: a counter never moved)."""
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def control(
    daemon: Daemon, name: str, body: dict[str, Any], token: str = ADMIN_TOKEN
) -> tuple[int, Any]:
    response = await treq.post(
        f"{daemon.admin_url}/control/{name}", data=json.dumps(body).encode(), headers=bearer(token)
    )
    return response.code, json.loads(await response.text())


async def state(daemon: Daemon, token: str = ADMIN_TOKEN) -> dict[str, Any]:
    response = await treq.get(f"{daemon.admin_url}/state", headers=bearer(token))
    assert response.code == 200, await response.text()
    answer: dict[str, Any] = json.loads(await response.text())
    return answer


async def register(
    browser: Browser, router_url: str, worker: str, assignment: str = "a1"
) -> dict[str, Any]:
    """A worker's /request_agent from `browser`: the answer's data (agent_id None: refused)."""
    provider_data = {
        "worker_name": worker,
        "agent_registration_id": f"{assignment}-{worker}",
        "assignment_id": assignment,
        "provider_type": "mock",
    }
    code, answer = await browser.post_json(
        f"{router_url}/request_agent",
        {"provider_data": provider_data, "client_timestamp": time.time()},
    )
    assert code == 200, answer
    data: dict[str, Any] = answer["data"]
    return data


async def submit(browser: Browser, router_url: str, agent_id: str, data: Any) -> tuple[int, Any]:
    return await browser.post_json(
        f"{router_url}/submit_task", {"USED_AGENT_ID": agent_id, "final_data": data}
    )
