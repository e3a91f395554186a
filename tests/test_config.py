"""The config file: defaults, relative paths, one-line errors naming file, section and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from architect.config import ConfigError, load_config

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


def test_task_config_must_be_a_json_object(tmp_path: Path) -> None:
    (tmp_path / "c.json").write_text("[1, 2]")
    with pytest.raises(ConfigError, match=r"task_config: .* must hold a JSON object"):
        load_config(write(tmp_path, "[router]\ntask_config = c.json\n"))


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load_config(tmp_path / "absent.ini")
