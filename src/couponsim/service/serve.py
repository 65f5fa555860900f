"""Running the service: uvicorn with the app, a worker beside it when asked, and
events warmed up at start (``--scenario NAME --start-in 10s``)."""

import re
from collections.abc import Sequence

import uvicorn

from couponsim.connection import connect
from couponsim.drivers.sync import SyncDriver
from couponsim.errors import InvalidInput
from couponsim.event import CouponEvent
from couponsim.flows.lifecycle import warm_up
from couponsim.persistence.repository import Repository
from couponsim.service.app import build_app
from couponsim.service.config import ServiceConfig
from couponsim.service.framing import server_options
from couponsim.service.worker import Worker

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m)?")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000}


def parse_duration_ms(text: str) -> int:
    """``10s``, ``500ms``, ``2m`` or plain seconds, in whole milliseconds."""
    match = _DURATION.fullmatch(text.strip())
    if match is None:
        raise InvalidInput(f"not a duration: {text!r} (e.g. 10s, 500ms, 2m)")
    return round(float(match[1]) * _UNIT_MS[match[2] or "s"])


def serve(config: ServiceConfig, host: str = "127.0.0.1", port: int = 8000,
          with_worker: bool = True, events: Sequence[CouponEvent] = (),
          plain_asyncio: bool = False) -> None:
    """Warm up ``events``, start the worker (unless another process runs one) and
    serve until interrupted. ``plain_asyncio``: asyncio's own loop and the pure-Python
    h11 parser rather than uvloop and httptools, to measure what those bring."""
    repository = Repository.from_url(config.db_url)
    driver = SyncDriver(connect(config.redis_url), config.redis_url, repository)
    for event in events:
        driver.run(warm_up(event))
    worker = Worker(config.redis_url, repository) if with_worker else None
    if worker is not None:
        worker.start()
    try:
        uvicorn.run(build_app(config), host=host, port=port, log_level="warning",
                    **server_options(plain_asyncio))
    finally:
        if worker is not None:
            worker.stop()
        repository.engine.dispose()


def work(redis_url: str, db_url: str) -> None:
    """The worker alone, in the foreground, for a service whose instances run none."""
    repository = Repository.from_url(db_url)
    try:
        Worker(redis_url, repository).run_until_stopped()
    finally:
        repository.engine.dispose()
