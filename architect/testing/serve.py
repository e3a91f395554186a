"""The child of separate.py: the daemon of a bot run, in a process of its own.

python -m architect.testing.serve '{"config": ..., "folder": ..., "workers": N, "duration": S}'
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import react
from twisted.logger import ILogObserver, LogEvent, globalLogBeginner
from zope.interface import implementer

from architect.config import ConfigError, load_config
from architect.testing.run_daemon import daemon_error, daemon_for_run


def say(word: str, text: str) -> None:
    sys.stdout.write(f"{word} {text}\n")
    sys.stdout.flush()


@implementer(ILogObserver)
class TellErrors:
    """Says each error the daemon logs to the parent."""

    def __call__(self, event: LogEvent) -> None:
        text = daemon_error(event)
        if text is not None:
            say("error", json.dumps(text))


async def serve(reactor: Any, settings: dict[str, Any]) -> None:
    globalLogBeginner.beginLoggingTo([TellErrors()], discardBuffer=True, redirectStandardIO=False)
    try:
        config = load_config(settings["config"])
        daemon = daemon_for_run(
            config, settings["workers"], settings["duration"], reactor, Path(settings["folder"])
        )
        await daemon.start()
    except (ConfigError, Exception) as e:
        say("failed", json.dumps(str(e)))
        raise SystemExit(2) from None
    # SIGTERM stops the reactor; the daemon stops first, its database closed.
    reactor.addSystemEventTrigger(
        "before", "shutdown", lambda: Deferred.fromCoroutine(daemon.stop())
    )
    say("ready", str(daemon.port))
    await Deferred()  # until the reactor stops


def main() -> None:
    settings = json.loads(sys.argv[1])
    react(lambda reactor: Deferred.fromCoroutine(serve(reactor, settings)))


if __name__ == "__main__":
    main()
