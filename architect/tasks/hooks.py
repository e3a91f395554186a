"""Calling a task's hooks, and loading the task module that provides them.

A hook may return a plain value, return a Deferred, or be `async def`. A plain
`def` hook may block (a database, a model, a file), so it runs in a thread and
never stalls other workers; mark a cheap plain hook with `@in_reactor` to call
it directly in the reactor instead (it may then return a Deferred).
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

from twisted.internet.defer import Deferred, ensureDeferred, maybeDeferred
from twisted.internet.threads import deferToThreadPool

from architect.config import is_module_path

F = TypeVar("F", bound=Callable[..., Any])
_IN_REACTOR = "__architect_in_reactor__"

Hook = Callable[..., Any]

# How a plain, possibly blocking hook is run: (function, *args) -> Deferred of its result.
BlockingRunner = Callable[..., "Deferred[Any]"]


class TaskModuleError(Exception):
    """The task module cannot be loaded, or a hook in it has the wrong shape."""


def in_reactor(hook: F) -> F:
    """Mark a plain hook as non-blocking: it runs in the reactor thread, not in a worker thread."""
    setattr(hook, _IN_REACTOR, True)
    return hook


def thread_runner(reactor: Any) -> BlockingRunner:
    """Run blocking hooks in the reactor's thread pool."""

    def run(function: Callable[..., Any], *args: Any) -> Deferred[Any]:
        return deferToThreadPool(reactor, reactor.getThreadPool(), function, *args)

    return run


def inline_runner(function: Callable[..., Any], *args: Any) -> Deferred[Any]:
    """Run blocking hooks inline (tests driven by task.Clock, where threads would not finish)."""
    return maybeDeferred(function, *args)


def call_hook(run_blocking: BlockingRunner, hook: Callable[..., Any], *args: Any) -> Deferred[Any]:
    """Call a user hook whatever its shape; the Deferred fails if the hook raises."""
    if inspect.iscoroutinefunction(hook):
        return maybeDeferred(lambda: ensureDeferred(hook(*args)))
    if getattr(hook, _IN_REACTOR, False):
        return maybeDeferred(hook, *args).addCallback(_await_coroutine)
    return run_blocking(hook, *args).addCallback(_await_coroutine)


def _await_coroutine(result: Any) -> Any:
    # A plain hook may still hand back a coroutine (e.g. a lambda around an async call).
    if inspect.iscoroutine(result):
        return ensureDeferred(result)
    return result


def load_task_module(spec: str) -> ModuleType:
    """`package.module`, or a path to a .py file (the config made it absolute)."""
    if is_module_path(spec):
        path = Path(spec).resolve()
        if not path.is_file():
            raise TaskModuleError(f"no task module file at {path}")
        name = f"architect_task_{path.stem}"
        module_spec = importlib.util.spec_from_file_location(name, path)
        if module_spec is None or module_spec.loader is None:
            raise TaskModuleError(f"cannot load {path} as a Python module")
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[name] = module
        try:
            module_spec.loader.exec_module(module)
        except Exception as e:
            del sys.modules[name]
            raise TaskModuleError(f"{path} failed to import: {type(e).__name__}: {e}") from e
        return module
    try:
        return importlib.import_module(spec)
    except ImportError as e:
        raise TaskModuleError(f"cannot import task module {spec!r}: {e}") from e
    except Exception as e:
        raise TaskModuleError(f"{spec} failed to import: {type(e).__name__}: {e}") from e
