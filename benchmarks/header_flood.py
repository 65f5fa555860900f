"""Does the service's memory stay flat under a stream of requests with oversized
headers? ``couponsim serve`` in a subprocess gets ``--requests`` requests, each with
one header of ``--header-mb`` MB (or a ``Last-Event-ID`` of that size), sent raw on a
socket; each should be answered 431 after at most MAX_HEAD_BYTES and a read, the
connection closed. Prints the answers and the server's resident memory before,
during (peak of samples) and after.

    python benchmarks/header_flood.py --redis-url redis://127.0.0.1:6384/15 \\
        [--requests 200] [--header-mb 4] [--plain-asyncio]
"""

import argparse
import socket
import tempfile
import threading
from collections import Counter

import psutil  # type: ignore[import-untyped]

from couponsim.processes import free_port
from live_service import served

MB = 1024 * 1024


def _flood_one(port: int, header: bytes, size: int) -> str:
    """One request whose header is ``size`` bytes; the status line of the answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as connection:
        try:
            connection.sendall(b"GET /livez HTTP/1.1\r\nHost: x\r\n" + header + b": ")
            sent, chunk = 0, b"x" * 65_536
            while sent < size:
                connection.sendall(chunk)
                sent += len(chunk)
            connection.sendall(b"\r\n\r\n")
        except OSError:
            pass                       # the server refused and closed while we sent
        answer = connection.recv(4096)
    return answer.split(b"\r\n")[0].decode() or "closed without an answer"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--header-mb", type=float, default=4.0)
    parser.add_argument("--plain-asyncio", action="store_true")
    args = parser.parse_args()
    port = free_port()
    with tempfile.TemporaryDirectory() as scratch:
        options = ["--no-worker", "--redis-url", args.redis_url,
                   "--db-url", f"sqlite:///{scratch}/flood.sqlite"]
        if args.plain_asyncio:
            options.append("--plain-asyncio")
        with served(port, *options) as server:
            process = psutil.Process(server.pid)
            before = process.memory_info().rss
            peak, stop = [before], threading.Event()

            def sample() -> None:
                while not stop.wait(0.05):
                    peak.append(process.memory_info().rss)

            sampler = threading.Thread(target=sample)
            sampler.start()
            answers: Counter[str] = Counter()
            for n in range(args.requests):
                header = b"Last-Event-ID" if n % 2 else b"X-Pad"
                answers[_flood_one(port, header, int(args.header_mb * MB))] += 1
            stop.set()
            sampler.join()
            after = process.memory_info().rss
    print(f"{args.requests} requests, each with one {args.header_mb:g} MB header "
          f"({'asyncio + h11' if args.plain_asyncio else 'uvloop + httptools, bounded'}):")
    for line, times in answers.most_common():
        print(f"  {times:5d} x {line}")
    print(f"server RSS: before {before / MB:.1f} MB, peak {max(peak) / MB:.1f} MB, "
          f"after {after / MB:.1f} MB")


if __name__ == "__main__":
    main()
