"""The config file: defaults, relative paths, one-line errors naming file, section and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from architect.config import BackendConfig, ConfigError, RouterConfig, load_config

ROOT = Path(__file__).resolve().parent.parent


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "router.ini"
    path.write_text(text)
    return path


def test_shipped_config_loads() -> None:
    config = load_config(ROOT / "conf" / "router.ini")
    assert config.router.listen == "tcp:3000:interface=127.0.0.1"
    assert config.router.request_timeout == 30
    assert config.router.disconnect_grace == 10
    assert config.router.heartbeat_timeout == 15
    assert config.router.static_dir is not None and config.router.static_dir.is_dir()


def test_every_shipped_key_is_documented_by_a_comment() -> None:
    lines = (ROOT / "conf" / "router.ini").read_text().splitlines()
    for i, line in enumerate(lines):
        if "=" in line and not line.startswith(";"):
            assert lines[i - 1].startswith(";"), f"undocumented key: {line}"


def test_empty_file_gives_defaults_and_paths_beside_the_file(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, ""))
    assert config.backend.mode == "off"
    assert config.backend.resume_window == 60.0
    assert config.router.upload_dir == tmp_path / "uploads"
    assert config.router.task_config == {}


def test_relative_paths_are_taken_from_the_config_folder(tmp_path: Path) -> None:
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "config.json").write_text('{"a": 1}')
    config = load_config(
        write(
            tmp_path,
            "[router]\nstatic_dir = site\ntask_config = site/config.json  ; inline comment\n",
        )
    )
    assert config.router.static_dir == tmp_path / "site"
    assert config.router.task_config == {"a": 1}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[router]\nrequest_timeout = soon\n", "[router] request_timeout: 'soon' is not a number"),
        ("[router]\ndisconnect_grace = -1\n", "[router] disconnect_grace: must be a positive"),
        ("[router]\nmax_body_bytes = 1.5\n", "[router] max_body_bytes: '1.5' is not a whole"),
        ("[router]\nlisten =\n", "[router] listen: must not be empty"),
        ("[router]\nstatic_dir = nowhere\n", "[router] static_dir: "),
        ("[router]\ntask_config = none.json\n", "[router] task_config: cannot read"),
        ("[router]\ncolour = blue\n", "[router] colour: unknown key"),
        ("[routr]\n", "[routr]: unknown section"),
        ("[backend]\nmode = sometimes\n", "[backend] mode: 'sometimes' is not one of"),
        ("[backend]\nresume_window = -5\n", "[backend] resume_window: must be 0 (off) or a"),
        ("[backend]\nresume_window = inf\n", "[backend] resume_window: must be 0 (off) or a"),
        ("[backend]\nmode = remote\n", "[backend] router_url: is required when mode = remote"),
        ("[backend]\nrouter_url = http://x\n", "[backend] router_url: 'http://x' must start with"),
        ("key = value\n", "not a valid ini file"),
    ],
)
def test_errors_name_file_section_and_key(tmp_path: Path, text: str, expected: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    message = str(caught.value)
    assert message.startswith(str(path))
    assert expected in message
    assert "\n" not in message


def test_connection_bounds_defaults_and_keys(tmp_path: Path) -> None:
    router = load_config(write(tmp_path, "")).router
    assert router.header_timeout == 10 and router.first_packet_timeout == 10
    assert (router.max_connections, router.max_connections_per_address) == (4000, 256)
    router = load_config(
        write(
            tmp_path,
            "[router]\nheader_timeout = 2.5\nmax_connections = 10_000\n"
            "max_connections_per_address = 0\n",
        )
    ).router
    assert router.header_timeout == 2.5
    assert (router.max_connections, router.max_connections_per_address) == (10_000, 0)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[router]\nheader_timeout = 0\n", "[router] header_timeout: must be a positive"),
        ("[router]\nmax_connections = -1\n", "[router] max_connections: must be 0 (unlimited)"),
        (
            "[router]\nmax_connections_per_address = some\n",
            "[router] max_connections_per_address: 'some' is not a whole number",
        ),
    ],
)
def test_connection_bounds_errors(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text))
    assert expected in str(caught.value)


def test_task_config_must_be_a_json_object(tmp_path: Path) -> None:
    (tmp_path / "c.json").write_text("[1, 2]")
    with pytest.raises(ConfigError, match=r"task_config: .* must hold a JSON object"):
        load_config(write(tmp_path, "[router]\ntask_config = c.json\n"))


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load_config(tmp_path / "absent.ini")


# --- [task] ---


def test_task_defaults_are_the_demo(tmp_path: Path) -> None:
    task = load_config(write(tmp_path, "")).task
    assert (task.name, task.units, task.module) == ("demo", None, None)
    assert (task.units_per_assignment, task.maximum_units_per_worker) == (1, 0)
    assert (task.allowed_concurrent, task.qualifications, task.onboarding) == (0, (), False)
    assert task.onboarding_qualification == "demo_onboarding"


def test_task_units_from_json_or_jsonl_beside_the_config(tmp_path: Path) -> None:
    (tmp_path / "units.json").write_text('[{"a": 1}, {"a": 2}]')
    (tmp_path / "units.jsonl").write_text('{"a": 1}\n\n{"a": 2}\n{"a": 3}\n')
    (tmp_path / "task.py").write_text("")
    for name, count in (("units.json", 2), ("units.jsonl", 3)):
        config = load_config(
            write(
                tmp_path,
                f"[task]\nname = run-1\nunits = {name}\nmodule = task.py\nonboarding = on\n"
                "units_per_assignment = 2\nmaximum_units_per_worker = 5\nallowed_concurrent = 1\n"
                'qualifications = [["english", "exists"], ["score", ">=", 3]]\n',
            )
        )
        task = config.task
        assert task.units is not None and len(task.units) == count
        assert task.units[0] == {"a": 1}
        assert task.module == str(tmp_path / "task.py")
        assert task.onboarding is True
        assert task.onboarding_qualification == "run-1_onboarding"
        assert (task.units_per_assignment, task.maximum_units_per_worker) == (2, 5)
        assert task.allowed_concurrent == 1
        assert [q.comparator for q in task.qualifications] == ["exists", ">="]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[task]\nname = r\nunits = missing.json\n", "[task] units: cannot read"),
        ("[task]\nname = r\nunits = bad.jsonl\n", "[task] units: {dir}/bad.jsonl line 2"),
        ("[task]\nname = r\nunits = list.json\n", "[task] units: {dir}/list.json item 2 must"),
        ("[task]\nunits = units.json\n", "[task] name: name the task run"),
        ("[task]\nname =\n", "[task] name: must not be empty"),
        ("[task]\nname = r\nmodule = nope.py\n", "[task] module: no task module file"),
        ("[task]\nname = r\nmodule = 1bad-name\n", "[task] module: '1bad-name' is neither"),
        ("[task]\nunits_per_assignment = 0\n", "[task] units_per_assignment: must be a positive"),
        ("[task]\nallowed_concurrent = -1\n", "[task] allowed_concurrent: must be 0 (unlimited)"),
        ("[task]\nonboarding = maybe\n", "[task] onboarding: 'maybe' is not on or off"),
        ('[task]\nqualifications = [["q", "~", 1]]\n', "[task] qualifications: requirement 1"),
    ],
)
def test_task_errors_name_file_section_and_key(tmp_path: Path, text: str, expected: str) -> None:
    (tmp_path / "bad.jsonl").write_text('{"a": 1}\n{"a": \n')
    (tmp_path / "list.json").write_text('[{"a": 1}, 2]')
    (tmp_path / "units.json").write_text('[{"a": 1}]')
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as error:
        load_config(path)
    message = str(error.value)
    assert message.startswith(f"{path}: ")
    assert expected.format(dir=tmp_path) in message
    assert "\n" not in message


def test_the_bounds_are_read_and_checked(tmp_path: Path) -> None:
    text = (
        "[router]\nmax_outbox_bytes = 1_000\nmax_backend_queue_bytes = 2000\n"
        "max_updates_per_second = 2.5\nmax_update_burst = 5\n"
        "[backend]\nmax_live_updates_per_agent = 7\nmax_live_update_bytes_per_agent = 8\n"
        "max_past_live_updates = 9\nmax_past_live_update_bytes = 10\n"
    )
    config = load_config(write(tmp_path, text))
    router, backend = config.router, config.backend
    assert (router.max_outbox_bytes, router.max_backend_queue_bytes) == (1000, 2000)
    assert (router.max_updates_per_second, router.max_update_burst) == (2.5, 5)
    assert (backend.max_live_updates_per_agent, backend.max_live_update_bytes_per_agent) == (7, 8)
    assert (backend.max_past_live_updates, backend.max_past_live_update_bytes) == (9, 10)
    with pytest.raises(ConfigError, match=r"max_updates_per_second: must be a positive number a"):
        load_config(write(tmp_path, "[router]\nmax_updates_per_second = 0\n"))


def test_the_journal_keys_are_read_and_checked(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, "[router]\njournal_dir = j\nmax_journal_bytes = 4096\n"))
    assert (config.router.journal_dir, config.router.max_journal_bytes) == (tmp_path / "j", 4096)
    assert load_config(write(tmp_path, "")).router.journal_dir == tmp_path / "journal"
    with pytest.raises(ConfigError, match=r"\[router\] max_journal_bytes"):
        load_config(write(tmp_path, "[router]\nmax_journal_bytes = 0\n"))
    with pytest.raises(ConfigError, match=r"\[router\] journal_dir: must name a folder"):
        load_config(write(tmp_path, "[router]\njournal_dir =\n"))


def test_the_shipped_config_gives_the_default_bounds() -> None:
    config = load_config(ROOT / "conf" / "router.ini")
    router = ("max_outbox_bytes", "max_backend_queue_bytes", "max_updates_per_second")
    for name in (*router, "max_update_burst"):
        assert getattr(config.router, name) == getattr(RouterConfig(), name), name
    backend = ("max_live_updates_per_agent", "max_live_update_bytes_per_agent")
    for name in (*backend, "max_past_live_updates", "max_past_live_update_bytes"):
        assert getattr(config.backend, name) == getattr(BackendConfig(), name), name
