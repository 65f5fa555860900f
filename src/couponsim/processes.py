"""``couponsim`` commands in child processes, for the twin check and the benchmarks:
started on a free port, waited on until they answer, and stopped as an operator stops
them (Ctrl-C, then kill only if they will not stop)."""

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
    """A port nobody listens on now (the kernel's pick)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def couponsim_process(*arguments: str, env: Mapping[str, str] | None = None
                      ) -> Iterator[subprocess.Popen[bytes]]:
    """``couponsim ARGUMENTS`` in a child process until the block ends, stopped by its pid."""
    process = subprocess.Popen([sys.executable, "-m", "couponsim.cli", *arguments],
                               env=env or os.environ)
    try:
        yield process
    finally:
        stop(process)


def stop(process: subprocess.Popen[bytes], grace_s: float = 30.0) -> None:
    """Ctrl-C; kill only if it has not stopped within ``grace_s``."""
    process.send_signal(signal.SIGINT)
    try:
        process.wait(grace_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def wait_until_ready(url: str, process: subprocess.Popen[bytes], timeout_s: float = 30.0
                     ) -> None:
    """Until ``url`` answers 200; an error if the process exits or the time runs out."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the service exited with code {process.returncode}")
        try:
            if httpx.get(url).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"the service did not answer {url} within {timeout_s:g} s")
