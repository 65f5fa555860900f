"""Running the service: uvicorn with the app, a worker beside it when asked, and
events warmed up at start (``--scenario NAME --start-in 10s``)."""

import re
from collections.abc import Sequence
from datetime import UTC, datetime

import uvicorn

from couponsim.connection import connect
from couponsim.drivers.sync import SyncDriver
from couponsim.errors import InvalidInput
from couponsim.event import CouponEvent
from couponsim.flows.lifecycle import warm_up_fresh
from couponsim.persistence.repository import Repository
from couponsim.service.app import build_app
from couponsim.service.config import ServiceConfig
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
          plain_asyncio: bool = False, quiet: bool = False) -> None:
    """Warm up ``events``, start the worker (unless another process runs one) and
    serve until interrupted. ``plain_asyncio``: asyncio's own loop and the pure-Python
    h11 parser rather than uvloop and httptools, to measure what those bring. Unless
    ``quiet``, say where the service answers and log each request as uvicorn does."""
    repository = Repository.from_url(config.db_url)
    driver = SyncDriver(connect(config.redis_url), config.redis_url, repository)
    for event in events:
        driver.run(warm_up_fresh(event))
    worker = Worker(config.redis_url, repository) if with_worker else None
    app = build_app(config)
    app.state.worker = worker          # /health reads what its consumers decide
    if worker is not None:
        worker.start()
    if not quiet:
        print("\n".join(addresses(host, port, config, events)), flush=True)
    try:
        uvicorn.run(app, host=host, port=port, log_level="warning" if quiet else "info",
                    access_log=not quiet, loop="asyncio" if plain_asyncio else "auto",
                    http="h11" if plain_asyncio else "auto")
    finally:
        if worker is not None:
            worker.stop()
        repository.engine.dispose()


def addresses(host: str, port: int, config: ServiceConfig,
              events: Sequence[CouponEvent]) -> list[str]:
    """What a person starting the service needs first: where it answers, and on what."""
    base = f"http://{f'[{host}]' if ':' in host else host}:{port}"
    lines = [f"couponsim service on {base}",
             f"  waiting-room page  {base}/",
             f"  OpenAPI            {base}/docs  (schema: {base}/openapi.json)",
             f"  health             {base}/health",
             f"  Redis {config.redis_url}; database {config.db_url}"]
    lines += [f"  event {event.coupon_id}: {event.stock:,} coupons, opens at "
              f"{datetime.fromtimestamp(event.starts_at_ms / 1000, UTC):%H:%M:%S} UTC"
              for event in events]
    return lines


def work(redis_url: str, db_url: str) -> None:
    """The worker alone, in the foreground, for a service whose instances run none."""
    repository = Repository.from_url(db_url)
    try:
        Worker(redis_url, repository).run_until_stopped()
    finally:
        repository.engine.dispose()
