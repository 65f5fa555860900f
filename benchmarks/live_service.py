"""The live service for the benchmarks: ``couponsim serve`` in a subprocess, measured
only once it answers, stopped as an operator would stop it."""

import os
import socket
import subprocess
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from couponsim.processes import couponsim_process, wait_until_ready


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
    with couponsim_process("serve", "--port", str(port), *options,
                           env=env or os.environ) as server:
        wait_until_ready(f"http://127.0.0.1:{port}{ready}", server, timeout_s)
        yield server
