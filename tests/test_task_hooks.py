"""Task hooks: every shape of hook, blocking hooks off the reactor thread, module loading."""

from __future__ import annotations

import threading
import types
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet.defer import Deferred, succeed

from architect.tasks.definition import LIVE, REMOTE_PROCEDURE, STATIC, TaskDefinition
from architect.tasks.hooks import (
    TaskModuleError,
    call_hook,
    in_reactor,
    inline_runner,
    load_task_module,
    thread_runner,
)
from tests.clients import reactor


def result_of(d: Deferred[Any]) -> Any:
    got: list[Any] = []
    d.addBoth(got.append)
    assert got, "the hook's Deferred has not fired"
    return got[0]


def test_plain_async_deferred_and_in_reactor_hooks() -> None:
    async def coroutine_hook(x: int) -> int:
        return x + 1

    @in_reactor
    def deferred_hook(x: int) -> Deferred[int]:
        return succeed(x + 2)

    assert result_of(call_hook(inline_runner, lambda x: x * 10, 4)) == 40
    assert result_of(call_hook(inline_runner, coroutine_hook, 4)) == 5
    assert result_of(call_hook(inline_runner, deferred_hook, 4)) == 6


def test_a_raising_hook_fails_its_deferred() -> None:
    def broken(x: int) -> int:
        raise RuntimeError("hook bug")

    async def broken_async(x: int) -> int:
        raise KeyError("missing")

    for hook in (broken, broken_async):
        failure = result_of(call_hook(inline_runner, hook, 1))
        assert failure.check(RuntimeError, KeyError)


@pytest_twisted.ensureDeferred
async def test_blocking_hook_runs_in_a_thread_while_the_reactor_serves() -> None:
    release = threading.Event()
    seen_threads: list[str] = []

    def blocking(x: int) -> int:
        seen_threads.append(threading.current_thread().name)
        release.wait(5)
        return x

    pending = call_hook(thread_runner(reactor), blocking, 7)
    # The reactor is free: a timer fires while the hook is still blocked.
    ticked: Deferred[None] = Deferred()
    reactor.callLater(0.01, ticked.callback, None)
    await ticked
    assert not pending.called
    release.set()
    assert await pending == 7
    assert seen_threads and seen_threads[0] != threading.main_thread().name


def test_load_module_by_path_and_by_name(tmp_path: Path) -> None:
    path = tmp_path / "my_task.py"
    path.write_text("PROCEDURES = {'add': lambda agent, args: args['a'] + args['b']}\n")
    module = load_task_module(str(tmp_path / "my_task.py"))
    definition = TaskDefinition.from_module(module)
    assert definition.kind == REMOTE_PROCEDURE
    assert definition.procedures["add"](None, {"a": 1, "b": 2}) == 3
    assert load_task_module("json").__name__ == "json"


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("raise ValueError('bad task')", "failed to import: ValueError: bad task"),
        ("TASK_KIND = 'weird'", "TASK_KIND must be one of"),
        ("TASK_KIND = 'live'", "a live task needs run_assignment"),
        ("init_data = 5", "init_data must be a function"),
        ("PROCEDURES = {'x': 1}", "PROCEDURES must map names to functions"),
    ],
)
def test_bad_task_modules_are_explained(tmp_path: Path, source: str, expected: str) -> None:
    path = tmp_path / "bad_task.py"
    path.write_text(source + "\n")
    with pytest.raises(TaskModuleError, match=expected):
        TaskDefinition.from_module(load_task_module(str(path)))


def test_missing_modules_are_explained(tmp_path: Path) -> None:
    with pytest.raises(TaskModuleError, match="no task module file"):
        load_task_module(str(tmp_path / "absent.py"))
    with pytest.raises(TaskModuleError, match="cannot import task module"):
        load_task_module("no_such_package.tasks")


def test_kind_is_inferred() -> None:
    def run_assignment(assignment: Any, agents: Any) -> None:
        return None

    live = types.ModuleType("live_task")
    vars(live)["run_assignment"] = run_assignment
    assert TaskDefinition.from_module(live).kind == LIVE
    assert TaskDefinition.from_module(types.ModuleType("empty")).kind == STATIC
