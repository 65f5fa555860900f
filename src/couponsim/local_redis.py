"""Local redis-server processes and clusters, started and stopped by their pids.

The failover tests and benchmarks need Redis servers they may kill, restart and
reconfigure: never a shared one. Each server here is a child process of the
caller (``--daemonize no``), so it is stopped by the pid that started it and
its files live in a directory the caller owns.

:func:`private_server` serves ``local://NAME`` URLs: a real Redis without
persistence for one process (one run, or one sweep worker), several times
faster per call than the embedded fakeredis, stopped when that process exits.
"""

import atexit
import multiprocessing.util
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

import redis
from redis.crc import key_slot

from couponsim.errors import NoRedisServer

CLUSTER_PORTS = tuple(range(7000, 7006))
"""The ports the issue's cluster is made of when they are free."""

_SETTLE_S = 30.0
"""How long a server or a cluster may take to come up or to fail over."""


class LocalRedisError(RuntimeError):
    """A local redis-server could not be started, or did not reach the state asked for."""


def redis_server_path() -> str | None:
    """The redis-server binary on PATH, or None when this machine has none."""
    return shutil.which("redis-server")


def port_is_free(port: int) -> bool:
    """True when nothing listens on 127.0.0.1:``port`` and it can be bound now."""
    with socket.socket() as probe:
        # as redis-server binds: a port in TIME_WAIT after a stopped server is free
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_ports(count: int, preferred: Sequence[int] = ()) -> list[int]:
    """``preferred`` if every one of them and its cluster bus port (+10000) is free,
    else ``count`` ports the kernel picks whose bus ports are free too."""
    if len(preferred) == count and all(port_is_free(p) and port_is_free(p + 10_000)
                                       for p in preferred):
        return list(preferred)
    ports: list[int] = []
    while len(ports) < count:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = int(probe.getsockname()[1])
        if port < 55_000 and port not in ports and port_is_free(port + 10_000):
            ports.append(port)
    return ports


def _wait_until(what: str, ready: Callable[[], bool], timeout_s: float = _SETTLE_S) -> None:
    """Poll ``ready`` until it holds; a server's state has no event to wait on."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with suppress(redis.RedisError, OSError):
            if ready():
                return
        time.sleep(0.05)
    raise LocalRedisError(f"{what} did not happen within {timeout_s:.0f} s")


@dataclass
class RedisServer:
    """One redis-server child process on 127.0.0.1:``port``, its files in ``directory``.

    ``options`` are redis-server's own (``--appendonly yes`` ...); they are given
    again on every :meth:`start`, so a restart comes back with the same
    persistence and reads the files its predecessor left.
    """

    port: int
    directory: Path
    options: tuple[str, ...] = ()
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int:
        if self.process is None:
            raise LocalRedisError(f"redis-server on port {self.port} is not running")
        return self.process.pid

    def client(self) -> redis.Redis:
        """A client of this server alone (never redirected), decoding replies."""
        return redis.Redis(port=self.port, decode_responses=True, socket_timeout=10)

    def start(self) -> "RedisServer":
        binary = redis_server_path()
        if binary is None:
            raise LocalRedisError("no redis-server on PATH")
        self.directory.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--daemonize", "no",
             "--dir", str(self.directory), "--logfile", "redis.log", "--save", "",
             *self.options],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait_until(f"redis-server on port {self.port} answering", self._answers)
        return self

    def _answers(self) -> bool:
        if self.process is None or self.process.poll() is not None:
            log = self.directory / "redis.log"
            raise LocalRedisError(f"redis-server on port {self.port} exited: "
                                  + (log.read_text()[-500:] if log.exists() else "no log"))
        with self.client() as client:
            return bool(client.ping())

    def send(self, signum: signal.Signals) -> None:
        """Send ``signum`` to this server's pid (SIGKILL, SIGSTOP, SIGCONT)."""
        os.kill(self.pid, signum)
        if signum is signal.SIGKILL:
            self.pid_wait()

    def pid_wait(self) -> None:
        """Reap the process after it died, so its port and pid are free again."""
        if self.process is not None:
            self.process.wait(timeout=_SETTLE_S)
            self.process = None

    def stop(self) -> None:
        """Stop the server by its pid; a stopped (SIGSTOP) one is woken to die."""
        if self.process is None:
            return
        with suppress(ProcessLookupError):
            os.kill(self.process.pid, signal.SIGCONT)
            self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.pid_wait()


def _start_on_a_free_port(server: RedisServer) -> RedisServer:
    """Start ``server``; when its port was taken between choosing it and binding it (by
    another process choosing at the same moment), start it again on other free ports."""
    for _ in range(_PORT_ATTEMPTS - 1):
        try:
            return server.start()
        except LocalRedisError:
            server.stop()
            server = RedisServer(free_ports(1)[0], server.directory.parent /
                                 f"{server.directory.name}-again", server.options)
    return server.start()


@contextmanager
def local_server(directory: Path, *options: str) -> Iterator[RedisServer]:
    """One fresh redis-server on a free port, stopped by its pid on leaving."""
    server = RedisServer(free_ports(1)[0], directory, options)
    try:
        yield server.start()
    finally:
        server.stop()


_private: dict[str, RedisServer] = {}
"""This process's private servers, by the NAME of their ``local://NAME`` URL."""
_PRIVATE_OPTIONS = ("--appendonly", "no")
"""No persistence: the store of one run, worth nothing once the run is judged."""
_PORT_ATTEMPTS = 3
"""A free port may be taken by another process before the server binds it."""


def private_server(name: str = "default") -> RedisServer:
    """The private redis-server of ``local://NAME`` in this process, started on first use.

    It lives as long as the process: :func:`stop_private_servers` runs at exit, also
    in a multiprocessing worker (which leaves by ``os._exit`` and so skips atexit but
    runs multiprocessing's finalizers). A forked child starts its own servers rather
    than share its parent's (see ``register_at_fork`` below).
    """
    server = _private.get(name)
    if server is not None and server.process is not None:
        return server
    if redis_server_path() is None:
        raise NoRedisServer()
    if not _private:
        atexit.register(stop_private_servers)
        multiprocessing.util.Finalize(None, stop_private_servers, exitpriority=10)
    directory = Path(tempfile.mkdtemp(prefix=f"couponsim-redis-{name}-"))
    for _ in range(_PORT_ATTEMPTS - 1):
        with suppress(LocalRedisError):
            return _start_private(name, directory)
    try:
        return _start_private(name, directory)
    except LocalRedisError:
        shutil.rmtree(directory, ignore_errors=True)
        raise


def _start_private(name: str, directory: Path) -> RedisServer:
    server = RedisServer(free_ports(1)[0], directory, _PRIVATE_OPTIONS)
    try:
        server.start()
    except LocalRedisError:
        server.stop()
        raise
    _private[name] = server
    return server


def stop_private_servers() -> None:
    """Stop every private server this process started, by its pid, and remove its files."""
    while _private:
        _name, server = _private.popitem()
        server.stop()
        shutil.rmtree(server.directory, ignore_errors=True)


def _forget_parents_servers() -> None:
    """In a forked child: the servers (and their Popen objects) are the parent's to stop."""
    _private.clear()


os.register_at_fork(after_in_child=_forget_parents_servers)


@dataclass
class LocalCluster:
    """A Redis Cluster of local servers: the first third of ``servers`` start as
    masters, each of the others as a replica of one of them (``--cluster-replicas``)."""

    servers: list[RedisServer]

    @property
    def url(self) -> str:
        return f"redis+cluster://127.0.0.1:{self.servers[0].port}"

    def live(self) -> list[RedisServer]:
        return [server for server in self.servers if server.process is not None]

    def role(self, server: RedisServer) -> str:
        with server.client() as client:
            return str(client.execute_command("ROLE")[0])

    def masters(self) -> list[RedisServer]:
        return [server for server in self.live() if self.role(server) == "master"]

    def master_of(self, key: str) -> RedisServer:
        """The live master that serves ``key``'s slot now."""
        slot = key_slot(key.encode())
        for server in self.masters():
            with server.client() as client:
                for start, end, *_nodes in client.execute_command("CLUSTER", "SLOTS"):
                    if start <= slot <= end and int(_nodes[0][1]) == server.port:
                        return server
        raise LocalRedisError(f"no live master serves slot {slot}")

    def replica_of(self, master: RedisServer) -> RedisServer:
        for server in self.live():
            with server.client() as client:
                info = client.info("replication")
            if info.get("role") == "slave" and int(info["master_port"]) == master.port:
                return server
        raise LocalRedisError(f"no live replica of port {master.port}")

    def flushall(self) -> None:
        """FLUSHALL on every master (a replica refuses writes and follows its master)."""
        for server in self.masters():
            with server.client() as client:
                client.flushall()

    def wait_healthy(self) -> None:
        """Until every live node sees cluster_state:ok, all slots served, and every
        replica's link to its master is up: a replica still in its first sync will
        not fail over, and a client that starts early sees CLUSTERDOWN."""
        def healthy() -> bool:
            for server in self.live():
                with server.client() as client:
                    if client.cluster("info")["cluster_state"] != "ok":
                        return False
                    info = client.info("replication")
                    if info["role"] == "slave" and info["master_link_status"] != "up":
                        return False
            return True
        _wait_until("cluster_state:ok on every node", healthy)

    def wait_promoted(self, replica: RedisServer) -> None:
        """Until ``replica`` became a master and the cluster is whole again."""
        _wait_until(f"promotion of port {replica.port}", lambda: self.role(replica) == "master")
        self.wait_healthy()

    def stop(self) -> None:
        for server in self.servers:
            server.stop()


@contextmanager
def local_cluster(directory: Path, masters: int = 3, node_timeout_ms: int = 1000,
                  ports: Sequence[int] = CLUSTER_PORTS) -> Iterator[LocalCluster]:
    """A cluster of ``masters`` masters with one replica each, on ``ports`` when they
    (and their bus ports) are free, else on free ports; stopped by pid on leaving.

    Replicas fail over whatever their lag (``cluster-replica-validity-factor 0``)
    so a test can make one fall behind and still see it promoted: the data loss
    a failover test is looking for.
    """
    binary = shutil.which("redis-cli")
    if binary is None:
        raise LocalRedisError("no redis-cli on PATH")
    options = ("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
               "--cluster-node-timeout", str(node_timeout_ms),
               "--cluster-replica-validity-factor", "0", "--appendonly", "no",
               "--repl-diskless-sync", "yes", "--repl-diskless-sync-delay", "0")
    chosen = free_ports(2 * masters, ports[:2 * masters])
    with ExitStack() as stack:
        cluster = LocalCluster([RedisServer(port, directory / str(port), options)
                                for port in chosen])
        stack.callback(cluster.stop)
        for n, server in enumerate(cluster.servers):
            cluster.servers[n] = _start_on_a_free_port(server)
        subprocess.run([binary, "--cluster", "create",
                        *(f"127.0.0.1:{server.port}" for server in cluster.servers),
                        "--cluster-replicas", "1", "--cluster-yes"],
                       check=True, capture_output=True, timeout=60)
        cluster.wait_healthy()
        yield cluster
