"""The ini file -> frozen attrs objects. Every error names the file, section and key.

Relative paths in the file are taken relative to the file's own folder, so a
config works the same whatever the current directory is.
"""

from __future__ import annotations

import configparser
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs

from architect.database_url import DatabaseUrl, parse_database_url
from architect.endpoints import is_loopback_only
from architect.qualifications import Requirement, parse_requirements

BACKEND_MODES = ("off", "embedded", "remote")


class ConfigError(Exception):
    """A config problem, as one line a user can act on."""

    def __init__(self, path: Path | str, section: str | None, key: str | None, problem: str):
        where = str(path)
        if section is not None:
            where += f": [{section}]"
            if key is not None:
                where += f" {key}"
        super().__init__(f"{where}: {problem}")


@attrs.frozen
class RouterConfig:
    listen: str = "tcp:3000:interface=127.0.0.1"
    static_dir: Path | None = None
    task_config: dict[str, Any] = attrs.field(factory=dict)
    backend_token: str = ""
    request_timeout: float = 30.0
    first_packet_timeout: float = 10.0  # a socket that says nothing is closed after this
    header_timeout: float = 10.0  # a request's headers must be in this long after its first byte
    max_connections: int = 4000  # 0: no cap
    max_connections_per_address: int = 256  # 0: no cap (behind a reverse proxy)
    disconnect_grace: float = 10.0
    heartbeat_timeout: float = 15.0
    heartbeat_gap: float = 12.0  # longer between two heartbeats: noted in the agent's timeline
    max_body_bytes: int = 64 * 1024 * 1024  # a multipart upload
    max_json_bytes: int = 1024 * 1024  # any other body (JSON)
    max_message_bytes: int = 1024 * 1024
    upload_dir: Path = Path("uploads")
    max_outbox_packets: int = 10_000
    # Bytes are len(json) of packets' data (protocol.data_size); the replay buffer has as many.
    max_outbox_bytes: int = 8 * 1024 * 1024
    replay_window: float = 60.0
    access_log: bool = True
    max_backend_queue_packets: int = 100_000
    max_backend_queue_bytes: int = 256 * 1024 * 1024
    # A browser's live updates, per agent: a token bucket (the excess is dropped).
    max_updates_per_second: float = 20.0
    max_update_burst: int = 40
    trust_loopback: bool = False  # a backend from loopback may connect without the token
    bind_agents_to_browser: bool = True  # an agent is the registering browser's (a cookie)
    status_retention: float = 600.0  # seconds a finished agent's status stays known
    max_upload_bytes_per_agent: int = 256 * 1024 * 1024
    max_upload_dir_bytes: int = 10 * 1024 * 1024 * 1024
    min_free_disk_bytes: int = 128 * 1024 * 1024
    # A separate router (mode off) keeps submissions here until its backend has them.
    journal_dir: Path = Path("journal")
    max_journal_bytes: int = 256 * 1024 * 1024  # of submissions the backend has not confirmed
    drain_timeout: float = 10.0  # seconds a stopping daemon waits for what is under way


@attrs.frozen
class BackendConfig:
    mode: str = "off"
    router_url: str = ""
    # Several routers sharing one run through Redis ([cluster] of theirs): one link to each.
    router_urls: tuple[str, ...] = ()
    backend_token: str = ""
    status_interval: float = 4.0
    reconnect_giveup: float = 300.0
    resume_window: float = 60.0  # 0: agents working at a restart are disconnected at once
    # One agent's live updates, both directions: past these its browser's are not taken.
    max_live_updates_per_agent: int = 10_000
    max_live_update_bytes_per_agent: int = 16 * 1024 * 1024
    # What a reloading page gets back of them: the newest, within both. The bytes stay below
    # the router's max_message_bytes, which a remote backend's answer must fit in.
    max_past_live_updates: int = 500
    max_past_live_update_bytes: int = 512 * 1024

    @property
    def routers(self) -> tuple[str, ...]:
        """The routers a remote backend connects to: router_urls, else router_url alone."""
        if self.router_urls:
            return self.router_urls
        return (self.router_url,) if self.router_url else ()


@attrs.frozen
class AdminConfig:
    """The admin listener (architect/admin/): off while `listen` is empty."""

    listen: str = ""
    admin_token: str = ""  # Authorization: Bearer; required unless listen is loopback only


@attrs.frozen
class LogConfig:
    format: str = "text"  # or json: one object per line (architect/log_json.py)


@attrs.frozen
class StorageConfig:
    data_dir: Path = Path("data")  # the SQLite file and, under files/, the uploads (both engines)
    database: str = "architect.sqlite3"
    # PostgreSQL instead of the SQLite file (architect/database_url.py); None: SQLite.
    url: DatabaseUrl | None = None
    password_file: Path | None = None  # its first line is the PostgreSQL password


@attrs.frozen
class ClusterConfig:
    """Several routers sharing one run through Redis (architect/cluster/); off without `redis`."""

    redis: str = ""  # redis://host:port/db
    router_id: str = ""  # this router's name among the others; empty: host:pid
    replay_length: int = 50  # client-bound packets kept per agent for a failover


DEMO_TASK_NAME = "demo"


@attrs.frozen
class TaskConfig:
    """What the backend serves: the task run, its units, limits, qualifications, onboarding.

    `units` is None when no units file is configured (the built-in demo units are
    used); `module` is None without a task module (the built-in demo hooks).
    """

    name: str = DEMO_TASK_NAME
    module: str | None = None
    units: tuple[dict[str, Any], ...] | None = None
    units_per_assignment: int = 1
    maximum_units_per_worker: int = 0  # 0: unlimited
    allowed_concurrent: int = 0  # 0: unlimited
    qualifications: tuple[Requirement, ...] = ()
    onboarding: bool = False
    timeout: float = 0.0  # seconds a live assignment may run; 0: no limit
    # Seconds an agent may hold its seat without submitting, from its creation; then it is
    # `expired` and its unit goes back. Mephisto's assignment_duration_in_seconds, and its
    # default: long enough for a task and a break, short enough that an abandoned or
    # squatted unit comes back within half an hour. Never unlimited: see docs/tasks.md.
    assignment_duration: float = 1800.0
    return_units: bool = True  # a unit whose agent left unfinished goes back to the pool
    onboarding_qualification: str = attrs.field()

    @onboarding_qualification.default
    def _named_after_the_run(self) -> str:
        return f"{self.name}_onboarding"

    def summary(self) -> dict[str, Any]:
        """The settings as JSON, kept with the task run (the units themselves are not)."""
        return {
            "module": self.module,
            "units": None if self.units is None else len(self.units),
            "units_per_assignment": self.units_per_assignment,
            "maximum_units_per_worker": self.maximum_units_per_worker,
            "allowed_concurrent": self.allowed_concurrent,
            "qualifications": [[q.name, q.comparator, q.value] for q in self.qualifications],
            "onboarding": self.onboarding,
            "timeout": self.timeout,
            "assignment_duration": self.assignment_duration,
            "return_units": self.return_units,
            "onboarding_qualification": self.onboarding_qualification,
        }


@attrs.frozen
class Config:
    path: Path
    router: RouterConfig
    backend: BackendConfig
    storage: StorageConfig = attrs.field(factory=StorageConfig)
    task: TaskConfig = attrs.field(factory=TaskConfig)
    admin: AdminConfig = attrs.field(factory=AdminConfig)
    log: LogConfig = attrs.field(factory=LogConfig)
    cluster: ClusterConfig = attrs.field(factory=ClusterConfig)


# --- value parsers: each takes (text, base folder) and raises ValueError with a reason ---


def _text(value: str, base: Path) -> str:
    return value


def _nonempty(value: str, base: Path) -> str:
    if not value:
        raise ValueError("must not be empty")
    return value


# The options of a Twisted endpoint string that name files (the ssl: endpoint's).
_ENDPOINT_FILES = ("privateKey", "certKey", "extraCertChain", "dhParameters", "caCertsDir")
_UNESCAPED_COLON = re.compile(r"(?<!\\):")


def _endpoint(value: str, base: Path) -> str:
    """A Twisted endpoint string, its file options (TLS keys) taken beside the config file."""
    if not value:
        raise ValueError("must not be empty")
    parts = _UNESCAPED_COLON.split(value)
    for i, part in enumerate(parts[1:], start=1):
        key, sep, path = part.partition("=")
        if parts[0] == "unix" and ((i == 1 and not sep) or key == "address"):
            # a socket file, beside the config file too (the commands find it there)
            where = (base / (path if sep else key).replace("\\:", ":")).resolve()
            parts[i] = ("address=" if sep else "") + str(where).replace(":", "\\:")
            continue
        if sep and key in _ENDPOINT_FILES and path:
            where = (base / path.replace("\\:", ":")).resolve()
            if key != "caCertsDir" and not where.is_file():
                raise ValueError(f"{key}: no file at {where}")
            parts[i] = f"{key}=" + str(where).replace(":", "\\:")
    return ":".join(parts)


def _optional_endpoint(value: str, base: Path) -> str:
    return _endpoint(value, base) if value else ""


def _positive_number(of_what: str) -> Callable[[str, Path], float]:
    """A parser of a positive finite number (`of_what`: "of seconds", "a second")."""

    def parse(value: str, base: Path) -> float:
        try:
            number = float(value)
        except ValueError:
            raise ValueError(f"{value!r} is not a number") from None
        if not number > 0 or number == float("inf"):
            raise ValueError(f"must be a positive number {of_what}, not {value!r}")
        return number

    return parse


_positive_float = _positive_number("of seconds")
_positive_rate = _positive_number("a second")


def _positive_int(value: str, base: Path) -> int:
    try:
        number = int(value.replace("_", ""))
    except ValueError:
        raise ValueError(f"{value!r} is not a whole number") from None
    if number <= 0:
        raise ValueError(f"must be a positive whole number, not {value!r}")
    return number


def _existing_dir(value: str, base: Path) -> Path | None:
    if not value:
        return None
    path = (base / value).resolve()
    if not path.is_dir():
        raise ValueError(f"{path} is not a folder")
    return path


def _dir_to_create(value: str, base: Path) -> Path:
    if not value:
        raise ValueError("must name a folder")
    return (base / value).resolve()


def _file_name(value: str, base: Path) -> str:
    if not value:
        raise ValueError("must name a file")
    if "/" in value or "\\" in value or value in (".", ".."):
        raise ValueError(f"{value!r} must be a plain file name, not a path")
    return value


def _json_object_file(value: str, base: Path) -> dict[str, Any]:
    if not value:
        return {}
    path = (base / value).resolve()
    try:
        loaded = json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise ValueError(f"cannot read {path}: {e.strerror}") from None
    except ValueError as e:
        raise ValueError(f"{path} is not valid JSON: {e}") from None
    if not isinstance(loaded, dict):
        raise ValueError(f"{path} must hold a JSON object")
    return loaded


def _zero_or_seconds(zero_means: str) -> Callable[[str, Path], float]:
    """A parser of a number of seconds where 0 has its own meaning (no limit, off...)."""

    def parse(value: str, base: Path) -> float:
        try:
            number = float(value)
        except ValueError:
            raise ValueError(f"{value!r} is not a number") from None
        if not 0 <= number < float("inf"):
            raise ValueError(
                f"must be 0 ({zero_means}) or a positive number of seconds, not {value!r}"
            )
        return number

    return parse


def _non_negative_int(value: str, base: Path) -> int:
    try:
        number = int(value.replace("_", ""))
    except ValueError:
        raise ValueError(f"{value!r} is not a whole number") from None
    if number < 0:
        raise ValueError(f"must be 0 (unlimited) or a positive whole number, not {value!r}")
    return number


_SWITCHES = {"on": True, "yes": True, "true": True, "1": True}
_SWITCHES.update({"off": False, "no": False, "false": False, "0": False})


def _switch(value: str, base: Path) -> bool:
    try:
        return _SWITCHES[value.lower()]
    except KeyError:
        raise ValueError(f"{value!r} is not on or off") from None


def is_module_path(spec: str) -> bool:
    """A task module given as a .py file (else a module name, package.module)."""
    return spec.endswith(".py") or "/" in spec or "\\" in spec


def _task_module(value: str, base: Path) -> str | None:
    """`package.module`, or a .py file relative to the config file (made absolute here)."""
    if not value:
        return None
    if is_module_path(value):
        path = (base / value).resolve()
        if not path.is_file():
            raise ValueError(f"no task module file at {path}")
        return str(path)
    if not all(part.isidentifier() for part in value.split(".")):
        raise ValueError(f"{value!r} is neither a module name (package.module) nor a .py file")
    return value


def read_units_file(value: str, base: Path) -> tuple[dict[str, Any], ...] | None:
    """A JSON list of assignment data objects, or JSONL with one object per line."""
    if not value:
        return None
    path = (base / value).resolve()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ValueError(f"cannot read {path}: {e.strerror}") from None
    try:
        whole = json.loads(text)
    except ValueError:
        whole = None  # not one JSON document: JSONL
    if isinstance(whole, list):
        items = whole
        where = [f"{path} item {n}" for n in range(1, len(items) + 1)]
    else:
        items, where = [], []
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                items.append(json.loads(line))
            except ValueError as e:
                raise ValueError(f"{path} line {number} is not valid JSON: {e}") from None
            where.append(f"{path} line {number}")
    if not items:
        raise ValueError(f"{path} holds no assignments")
    for item, place in zip(items, where, strict=True):
        if not isinstance(item, dict):
            raise ValueError(f"{place} must be a JSON object of assignment data")
    return tuple(items)


def _requirements(value: str, base: Path) -> tuple[Requirement, ...]:
    return parse_requirements(value)


def _choice(*choices: str) -> Callable[[str, Path], str]:
    def parse(value: str, base: Path) -> str:
        if value not in choices:
            raise ValueError(f"{value!r} is not one of: {', '.join(choices)}")
        return value

    return parse


def _websocket_url(value: str, base: Path) -> str:
    if value and not value.startswith(("ws://", "wss://")):
        raise ValueError(f"{value!r} must start with ws:// or wss://")
    return value


MAX_ROUTERS = 64  # [backend] router_urls: one link (and its reconnections) per router


def _websocket_urls(value: str, base: Path) -> tuple[str, ...]:
    urls = tuple(value.replace(",", " ").split())
    if len(urls) > MAX_ROUTERS:
        raise ValueError(f"names {len(urls)} routers; at most {MAX_ROUTERS}")
    for url in urls:
        _websocket_url(url, base)
    if len(set(urls)) < len(urls):
        raise ValueError("names a router twice")
    return urls


def _database_url(value: str, base: Path) -> DatabaseUrl | None:
    return parse_database_url(value) if value else None


def _password_file(value: str, base: Path) -> Path | None:
    if not value:
        return None
    path = (base / value).resolve()
    if not path.is_file():
        raise ValueError(f"{path} is not a file")
    return path


def _redis_url(value: str, base: Path) -> str:
    if value:
        from architect.redis_url import parse_redis_url

        parse_redis_url(value)  # raises ValueError with the reason
    return value


def _router_id(value: str, base: Path) -> str:
    if value and not re.fullmatch(r"[A-Za-z0-9_.:-]{1,64}", value):
        raise ValueError(f"{value!r}: 1-64 letters, digits or _ . : -")
    return value


_Parser = Callable[[str, Path], Any]

SCHEMA: dict[str, tuple[type, dict[str, _Parser]]] = {
    "router": (
        RouterConfig,
        {
            "listen": _endpoint,
            "static_dir": _existing_dir,
            "task_config": _json_object_file,
            "backend_token": _text,
            "request_timeout": _positive_float,
            "first_packet_timeout": _positive_float,
            "header_timeout": _positive_float,
            "max_connections": _non_negative_int,
            "max_connections_per_address": _non_negative_int,
            "disconnect_grace": _positive_float,
            "heartbeat_timeout": _positive_float,
            "heartbeat_gap": _positive_float,
            "max_body_bytes": _positive_int,
            "max_json_bytes": _positive_int,
            "max_message_bytes": _positive_int,
            "upload_dir": _dir_to_create,
            "max_outbox_packets": _positive_int,
            "max_outbox_bytes": _positive_int,
            "replay_window": _positive_float,
            "access_log": _switch,
            "max_backend_queue_packets": _positive_int,
            "max_backend_queue_bytes": _positive_int,
            "max_updates_per_second": _positive_rate,
            "max_update_burst": _positive_int,
            "trust_loopback": _switch,
            "bind_agents_to_browser": _switch,
            "status_retention": _positive_float,
            "max_upload_bytes_per_agent": _positive_int,
            "max_upload_dir_bytes": _positive_int,
            "min_free_disk_bytes": _non_negative_int,
            "journal_dir": _dir_to_create,
            "max_journal_bytes": _positive_int,
            "drain_timeout": _zero_or_seconds("no wait"),
        },
    ),
    "backend": (
        BackendConfig,
        {
            "mode": _choice(*BACKEND_MODES),
            "router_url": _websocket_url,
            "router_urls": _websocket_urls,
            "backend_token": _text,
            "status_interval": _positive_float,
            "reconnect_giveup": _positive_float,
            "resume_window": _zero_or_seconds("off"),
            "max_live_updates_per_agent": _positive_int,
            "max_live_update_bytes_per_agent": _positive_int,
            "max_past_live_updates": _positive_int,
            "max_past_live_update_bytes": _positive_int,
        },
    ),
    "storage": (
        StorageConfig,
        {
            "data_dir": _dir_to_create,
            "database": _file_name,
            "url": _database_url,
            "password_file": _password_file,
        },
    ),
    "task": (
        TaskConfig,
        {
            "name": _nonempty,
            "module": _task_module,
            "units": read_units_file,
            "units_per_assignment": _positive_int,
            "maximum_units_per_worker": _non_negative_int,
            "allowed_concurrent": _non_negative_int,
            "qualifications": _requirements,
            "onboarding": _switch,
            "onboarding_qualification": _text,
            "timeout": _zero_or_seconds("no limit"),
            "assignment_duration": _positive_float,
            "return_units": _switch,
        },
    ),
    "admin": (AdminConfig, {"listen": _optional_endpoint, "admin_token": _text}),
    "log": (LogConfig, {"format": _choice("text", "json")}),
    "cluster": (
        ClusterConfig,
        {"redis": _redis_url, "router_id": _router_id, "replay_length": _positive_int},
    ),
}


def load_config(path: str | Path) -> Config:
    """Read and check a config file; raise ConfigError naming what is wrong."""
    path = Path(path)
    parser = configparser.ConfigParser(
        inline_comment_prefixes=(";", "#"), interpolation=None, default_section="\0none"
    )
    try:
        with path.open(encoding="utf-8") as f:
            parser.read_file(f)
    except FileNotFoundError:
        raise ConfigError(path, None, None, "no such file") from None
    except OSError as e:
        raise ConfigError(path, None, None, f"cannot read: {e.strerror}") from None
    except configparser.Error as e:
        first_line = str(e).splitlines()[0]
        raise ConfigError(path, None, None, f"not a valid ini file: {first_line}") from None

    base = path.resolve().parent
    for section in parser.sections():
        if section not in SCHEMA:
            raise ConfigError(path, section, None, f"unknown section (known: {', '.join(SCHEMA)})")
    sections: dict[str, Any] = {}
    for section, (cls, keys) in SCHEMA.items():
        values: dict[str, Any] = {}
        if parser.has_section(section):
            for key, raw in parser.items(section):
                if key not in keys:
                    raise ConfigError(path, section, key, "unknown key")
                try:
                    values[key] = keys[key](raw.strip(), base)
                except ValueError as e:
                    raise ConfigError(path, section, key, str(e)) from None
        if section == "task" and values.get("onboarding_qualification") == "":
            del values["onboarding_qualification"]  # named after the run
        sections[section] = cls(**values)

    config = beside_its_file(Config(path=path, **sections))
    _check_together(config)
    check_served_folder(config)
    return config


def check_served_folder(config: Config) -> None:
    """A ConfigError if `static_dir` would serve what is not the task's frontend: the config
    file (and its token), the database, or the workers' uploads."""
    static = config.router.static_dir
    if static is None:
        return
    static = static.resolve()
    private = {
        "the config file": config.path.resolve().parent,
        "data_dir": config.storage.data_dir.resolve(),
        "upload_dir": config.router.upload_dir.resolve(),
        "journal_dir": config.router.journal_dir.resolve(),
    }
    for what, folder in private.items():
        if folder.is_relative_to(static):
            problem = f"serves {what} ({folder}) to anyone: give the frontend a folder of its own"
            raise ConfigError(config.path, "router", "static_dir", problem)
        if what != "the config file" and static.is_relative_to(folder):
            problem = f"is inside {what} ({folder}): give the frontend a folder of its own"
            raise ConfigError(config.path, "router", "static_dir", problem)


def beside_its_file(config: Config) -> Config:
    """The config with its relative paths (the defaults, or a Config built in code) taken
    beside its file, as the ini file's own relative paths are."""
    base = config.path.resolve().parent

    def here(path: Path) -> Path:
        return (base / path).resolve()

    router = attrs.evolve(
        config.router,
        upload_dir=here(config.router.upload_dir),
        journal_dir=here(config.router.journal_dir),
    )
    if config.router.static_dir is not None:
        router = attrs.evolve(router, static_dir=here(config.router.static_dir))
    storage = attrs.evolve(config.storage, data_dir=here(config.storage.data_dir))
    task = config.task
    if task.module is not None and is_module_path(task.module):
        task = attrs.evolve(task, module=str(here(Path(task.module))))
    return attrs.evolve(config, router=router, storage=storage, task=task)


def _check_together(config: Config) -> None:
    backend = config.backend
    if config.cluster.redis:
        if backend.mode != "off":
            problem = "several routers share Redis only with [backend] mode = off"
            raise ConfigError(config.path, "cluster", "redis", problem)
        from architect.redis_url import redis_client_missing

        missing = redis_client_missing()
        if missing:
            raise ConfigError(config.path, "cluster", "redis", missing)
    if backend.router_url and backend.router_urls:
        problem = "set router_url or router_urls, not both"
        raise ConfigError(config.path, "backend", "router_urls", problem)
    if backend.mode == "remote" and not backend.routers:
        raise ConfigError(config.path, "backend", "router_url", "is required when mode = remote")
    storage = config.storage
    if storage.password_file is not None and storage.url is None:
        raise ConfigError(config.path, "storage", "password_file", "is for a PostgreSQL url")
    admin = config.admin
    if admin.listen and not admin.admin_token and not is_loopback_only(admin.listen):
        problem = "listens beyond this host: set admin_token, or listen on 127.0.0.1"
        raise ConfigError(config.path, "admin", "listen", problem)
    task = config.task
    if task.name == DEMO_TASK_NAME and (task.units is not None or task.module is not None):
        raise ConfigError(
            config.path,
            "task",
            "name",
            f"name the task run (not {DEMO_TASK_NAME!r}) when units or a module are configured",
        )
