"""Task modules the browser tests run: written to a file and named in [task] module."""

from __future__ import annotations

# Two workers chat: a welcome, then every message is relayed to the partner.
CHAT_TASK = """
    from twisted.internet.defer import DeferredList, ensureDeferred

    from architect.tasks.agent import AgentGone

    async def relay(sender, partners):
        while sender.is_active:
            try:
                update = await sender.act(timeout=1)
            except AgentGone:
                return
            if update is None or "text" not in update:
                continue
            for partner in partners:
                if partner.is_active:
                    partner.observe({"text": update["text"], "from": "partner"})

    async def run_assignment(assignment, agents):
        for agent in agents:
            if not assignment.resumed:
                agent.observe({"text": "Welcome to " + assignment.data["room"], "from": "task"})
        loops = [
            ensureDeferred(relay(agent, [a for a in agents if a is not agent]))
            for agent in agents
        ]
        await DeferredList(loops)
"""

# Remote procedures: a plain function (run in a thread) and an async one that can fail.
RPC_TASK = """
    def add(agent, args):
        return {"sum": args["a"] + args["b"]}

    async def divide(agent, args):
        return args["a"] / args["b"]

    PROCEDURES = {"add": add, "divide": divide}
"""

# One worker: every message comes back from the task code as "echo: <text>".
ECHO_TASK = """
    from architect.tasks.agent import AgentGone

    async def run_assignment(assignment, agents):
        [agent] = agents
        if not assignment.resumed:
            agent.observe({"text": "Say something.", "from": "task"})
        while agent.is_active:
            try:
                update = await agent.act(timeout=1)
            except AgentGone:
                return
            if update is not None and "text" in update:
                agent.observe({"text": "echo: " + update["text"], "from": "task"})
"""
