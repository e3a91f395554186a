"""The [cluster] section: off by default, checked URL and name, mode = off only."""

from __future__ import annotations

from pathlib import Path

import pytest

from architect.config import ConfigError, load_config


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "router.ini"
    path.write_text(text)
    return path


def test_no_cluster_section_means_no_redis(tmp_path: Path) -> None:
    cluster = load_config(write(tmp_path, "")).cluster
    assert (cluster.redis, cluster.router_id, cluster.replay_length) == ("", "", 50)


def test_a_cluster_of_routers(tmp_path: Path) -> None:
    text = "[cluster]\nredis = redis://127.0.0.1:6390/1\nrouter_id = r1\nreplay_length = 9\n"
    cluster = load_config(write(tmp_path, text)).cluster
    assert (cluster.redis, cluster.router_id, cluster.replay_length) == (
        "redis://127.0.0.1:6390/1",
        "r1",
        9,
    )


@pytest.mark.parametrize(
    "text, problem",
    [
        ("[cluster]\nredis = http://h\n", r"\[cluster\] redis.*redis://"),
        ("[cluster]\nrouter_id = a b\n", r"\[cluster\] router_id"),
        ("[cluster]\nreplay_length = 0\n", r"\[cluster\] replay_length"),
        (
            "[backend]\nmode = embedded\n[cluster]\nredis = redis://h\n",
            "only with \\[backend\\] mode = off",
        ),
    ],
)
def test_bad_cluster_settings_are_refused(tmp_path: Path, text: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=problem):
        load_config(write(tmp_path, text))


def test_a_missing_redis_client_is_a_config_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "txredisapi" else real(name)
    )
    with pytest.raises(ConfigError, match="pip install"):
        load_config(write(tmp_path, "[cluster]\nredis = redis://h\n"))
