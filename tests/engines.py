"""The storage engines the storage-dependent tests run on.

A test taking the `engine` or `storage_config` fixture runs once per engine; a daemon
test (the `daemons` fixture) does in a module with DAEMONS_ON_EVERY_ENGINE = True, or
when it is marked `on_every_engine` (in a module whose other daemons keep nothing).
"""

from __future__ import annotations

import pytest

ENGINES = ["sqlite", "postgresql"]

on_every_engine = pytest.mark.parametrize("daemon_engine", ENGINES)
