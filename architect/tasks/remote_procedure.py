"""Remote procedure calls: browser live updates `{request_id, target, args}` -> task functions.

The answer goes back as a client-bound live update `{"handles": request_id,
"response": <JSON text>}`, which is what mephisto-task 2.0.4 expects. A call
that cannot be answered (unknown name, bad arguments, an exception, a result
that is not JSON) is answered too, never left hanging: `response` then holds
`{"error": message}` and the update also carries `"error": message`, so
architect.js can reject its Promise while mephisto-task pages still get a value.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from twisted.logger import Logger
from twisted.python.failure import Failure

from architect.protocol import ProtocolError, decode_json
from architect.tasks.agent import Agent
from architect.tasks.hooks import BlockingRunner, call_hook

log = Logger()

Procedure = Any  # fn(agent, args) -> JSON value, Deferred or coroutine


def is_call(data: dict[str, Any]) -> bool:
    """A live update shaped as a remote procedure call."""
    return isinstance(data.get("request_id"), str) and "target" in data


class ProcedureDispatcher:
    def __init__(self, procedures: Mapping[str, Procedure], run_blocking: BlockingRunner) -> None:
        self.procedures = dict(procedures)
        self.run_blocking = run_blocking

    def attach(self, agent: Agent) -> None:
        """Route the agent's live updates to the procedures."""
        agent.on_live_update = self.on_live_update

    def attach_beside_act(self, agent: Agent) -> None:
        """Calls go to the procedures; any other live update goes to the task's `act()`."""

        def route(agent: Agent, data: dict[str, Any]) -> None:
            if is_call(data):
                self.on_live_update(agent, data)
            else:
                agent.queue_for_act(data)

        agent.on_live_update = route

    def on_live_update(self, agent: Agent, data: dict[str, Any]) -> None:
        request_id, target = data.get("request_id"), data.get("target")
        if not isinstance(request_id, str) or not request_id:
            log.warn("agent {agent_id} sent a live update that is no call", agent_id=agent.agent_id)
            return
        if not isinstance(target, str) or target not in self.procedures:
            known = ", ".join(sorted(self.procedures)) or "none"
            self._error(agent, request_id, f"unknown procedure {target!r} (known: {known})")
            return
        raw_args = data.get("args")
        if isinstance(raw_args, str):
            try:
                args = decode_json(raw_args)  # (not too deep for the task's function)
            except ProtocolError:
                self._error(agent, request_id, f"the arguments of {target!r} are not JSON")
                return
        else:
            args = raw_args
        d = call_hook(self.run_blocking, self.procedures[target], agent, args)
        d.addCallbacks(
            lambda result: self._answer(agent, request_id, target, result),
            lambda failure: self._failed(agent, request_id, target, failure),
        )

    def _answer(self, agent: Agent, request_id: str, target: str, result: Any) -> None:
        try:
            text = json.dumps(result)
        except (TypeError, ValueError):
            self._error(agent, request_id, f"{target!r} returned a value that is not JSON")
            return
        agent.observe({"handles": request_id, "response": text})

    def _failed(self, agent: Agent, request_id: str, target: str, failure: Failure) -> None:
        log.failure(
            "procedure {target} failed for agent {agent_id}",
            failure,
            target=target,
            agent_id=agent.agent_id,
        )
        self._error(agent, request_id, f"{target!r} failed: {failure.getErrorMessage()}")

    def _error(self, agent: Agent, request_id: str, message: str) -> None:
        agent.observe(
            {"handles": request_id, "response": json.dumps({"error": message}), "error": message}
        )
