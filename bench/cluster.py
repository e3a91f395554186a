"""Our routers as a cluster for S1-S3: redis-server, N routers with ``[cluster] redis``, and
haproxy round-robin in front running ``conf/haproxy.cfg`` (its ports moved). The generator's
backend connects to each router (one backend process per router, as our backend keeps one
link per router); its workers reach the routers through haproxy only.

- ``ours-lb1``: one router behind haproxy, with Redis: what the load balancer and Redis cost;
- ``ours-lb2``: two routers behind haproxy: what a second router brings on this machine.
"""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

from bench.servers import (
    BENCH_DIR,
    OurRouter,
    Server,
    SetupError,
    free_port,
    is_alive,
    stop_process,
)

HAPROXY = "/usr/sbin/haproxy"
REDIS_SERVER = "/usr/bin/redis-server"
HAPROXY_EXAMPLE = BENCH_DIR.parent / "conf" / "haproxy.cfg"


def haproxy_config(example: str, port: int, routers: list[int]) -> str:
    """conf/haproxy.cfg's text, listening on `port`, balancing over the routers' ports."""
    text = re.sub(r"(?m)^(\s*bind )\S+", lambda m: f"{m.group(1)}127.0.0.1:{port}", example)
    servers = "".join(
        f"    server router{i} 127.0.0.1:{router}\n" for i, router in enumerate(routers, 1)
    )
    text, n = re.subn(r"(?m)^\s*server .*\n(\s*server .*\n)*", servers, text)
    if n != 1:
        raise SetupError("conf/haproxy.cfg: expected one block of server lines")
    return text


class _Process:
    """A helper subprocess with its log in the cluster's folder."""

    def __init__(self, argv: list[str], log: Path) -> None:
        with log.open("ab") as out:
            self.process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)

    def stop(self) -> None:
        stop_process(self.process)


class ClusterRouter(OurRouter):
    def __init__(self, workdir: Path, redis_port: int, router_id: str) -> None:
        super().__init__(workdir)
        self.redis_port = redis_port
        self.router_id = router_id
        self.name = router_id

    def config_text(self) -> str:
        return super().config_text() + (
            f"[cluster]\nredis = redis://127.0.0.1:{self.redis_port}/0\n"
            f"router_id = {self.router_id}\n"
        )


class OurCluster(Server):
    name = "ours-cluster"
    router_count = 2

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir)
        self.routers: list[ClusterRouter] = []
        self.helpers: list[_Process] = []

    @property
    def pid(self) -> int:
        return self.routers[0].pid if self.routers else 0

    @property
    def pids(self) -> dict[str, int]:
        """Each router's pid (router, router2, ...), for the CPU figures."""
        return {"router" + (str(i) if i > 1 else ""): r.pid for i, r in enumerate(self.routers, 1)}

    @property
    def backend_urls(self) -> list[str]:
        return [router.ws_url for router in self.routers]

    def start(self) -> None:
        for binary in (REDIS_SERVER, HAPROXY):
            if not Path(binary).exists():
                raise SetupError(f"{binary} is missing (apt-get install redis-server haproxy)")
        self.workdir.mkdir(parents=True, exist_ok=True)
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> None:
        redis_port = free_port()
        redis = [REDIS_SERVER, "--port", str(redis_port), "--bind", "127.0.0.1"]
        redis += ["--save", "", "--appendonly", "no", "--dir", str(self.workdir)]
        self.helpers.append(_Process(redis, self.workdir / "redis.log"))
        for i in range(1, self.router_count + 1):
            router = ClusterRouter(self.workdir / f"r{i}", redis_port, f"r{i}")
            router.start()
            self.routers.append(router)
        self.port = free_port()
        config = self.workdir / "haproxy.cfg"
        example = HAPROXY_EXAMPLE.read_text()
        config.write_text(haproxy_config(example, self.port, [r.port for r in self.routers]))
        haproxy = [HAPROXY, "-db", "-f", str(config)]
        self.helpers.append(_Process(haproxy, self.workdir / "haproxy.log"))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if is_alive(self.http_url):
                return
            time.sleep(0.1)
        raise SetupError("haproxy in front of the cluster did not answer /is_alive in 30 s")

    def stop(self) -> None:
        for helper in reversed(self.helpers):
            helper.stop()
        self.helpers.clear()
        for router in self.routers:
            router.stop()
        self.routers.clear()


class OneRouterBehindHAProxy(OurCluster):
    name = "ours-lb1"
    router_count = 1


class TwoRoutersBehindHAProxy(OurCluster):
    name = "ours-lb2"
    router_count = 2
