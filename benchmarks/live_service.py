"""The live service for the benchmarks: ``couponsim serve`` in a subprocess, measured
only once it answers, stopped as an operator would stop it."""

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import httpx


def free_port() -> int:
    """A port nobody listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def served(port: int, *options: str, env: Mapping[str, str] | None = None,
           ready: str = "/livez", timeout_s: float = 30.0
           ) -> Iterator[subprocess.Popen[bytes]]:
    """``couponsim serve --port PORT OPTIONS...`` until the block ends; entered once
    ``ready`` answers 200. A taken port is refused first: another service's ``/livez``
    would answer for this one, and every figure would be its."""
    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", port)) == 0:
            raise RuntimeError(f"port {port} is taken: choose another with --port")
    server = subprocess.Popen([sys.executable, "-m", "couponsim.cli", "serve",
                               "--port", str(port), *options], env=env or os.environ)
    try:
        _wait_until_ready(f"http://127.0.0.1:{port}{ready}", server, timeout_s)
        yield server
    finally:
        _stop(server)


def _wait_until_ready(url: str, server: subprocess.Popen[bytes], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the service exited with code {server.returncode}")
        try:
            if httpx.get(url).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"the service did not answer {url} within {timeout_s:g} s")


def _stop(server: subprocess.Popen[bytes]) -> None:
    """Ctrl-C; kill only if it will not stop."""
    server.send_signal(signal.SIGINT)
    try:
        server.wait(30)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()
