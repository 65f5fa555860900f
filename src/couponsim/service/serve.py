"""Running the service: uvicorn with the app, a worker beside it when asked, and
events warmed up at start (``--scenario NAME --start-in 10s``).

With ``workers > 1``, uvicorn's supervisor starts that many service processes on one
port, each building its own app (driver, gateway, status hub, metrics) from the
configuration handed down in the environment, while the worker (consumers,
schedulers, admission) runs once, here, beside the supervisor. Every process shares
the one secret, so any of them reads the proof another made, and the worker keys the
coupon codes with it. ``couponsim worker`` in another process takes it from
``COUPONSIM_SECRET``, as the service does.
"""

import dataclasses
import json
import os
import re
from collections.abc import Sequence
from datetime import UTC, datetime

import uvicorn
from fastapi import FastAPI

from couponsim.connection import connect
from couponsim.drivers.sync import SyncDriver
from couponsim.errors import InvalidInput
from couponsim.event import CouponEvent
from couponsim.flows.lifecycle import warm_up_fresh
from couponsim.persistence.repository import Repository
from couponsim.service.app import build_app
from couponsim.service.config import ServiceConfig
from couponsim.service.framing import server_options
from couponsim.service.worker import Worker, WorkerConfig

CONFIG_ENV = "COUPONSIM_SERVICE_CONFIG"
"""How the supervisor hands the configuration (secrets included) to its service processes:
their environment, which only their user can read, never their command line."""
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m)?")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000}


def parse_duration_ms(text: str) -> int:
    """``10s``, ``500ms``, ``2m`` or plain seconds, in whole milliseconds."""
    match = _DURATION.fullmatch(text.strip())
    if match is None:
        raise InvalidInput(f"not a duration: {text!r} (e.g. 10s, 500ms, 2m)")
    return round(float(match[1]) * _UNIT_MS[match[2] or "s"])


def app_from_env() -> FastAPI:
    """The app of one service process started by the supervisor (uvicorn's factory)."""
    fields = json.loads(os.environ[CONFIG_ENV])
    fields["jwt_algorithms"] = tuple(fields["jwt_algorithms"])
    return build_app(ServiceConfig(**fields))


def serve(config: ServiceConfig, host: str = "127.0.0.1", port: int = 8000,
          with_worker: bool = True, events: Sequence[CouponEvent] = (),
          plain_asyncio: bool = False, workers: int = 1, quiet: bool = False) -> None:
    """Warm up ``events``, start the worker (unless another process runs one) and
    serve until interrupted, in ``workers`` service processes. ``plain_asyncio``:
    asyncio's own loop and the pure-Python h11 parser rather than uvloop and
    httptools, to measure what those bring. Unless ``quiet``, say where the service
    answers and log each request as uvicorn does."""
    if workers < 1:
        raise InvalidInput(f"workers must be at least 1, got {workers}")
    if workers > 1 and config.redis_url.startswith("fake://"):
        raise InvalidInput("several service processes need a Redis server they all reach "
                           "(--redis-url), not the in-process fake:// one")
    repository = Repository.from_url(config.db_url)
    driver = SyncDriver(connect(config.redis_url), config.redis_url, repository)
    for event in events:
        driver.run(warm_up_fresh(event))
    worker = Worker(config.redis_url, repository, codes=config.codes()) if with_worker else None
    if worker is not None:
        worker.start()
    if not quiet:
        print("\n".join(addresses(host, port, config, events)), flush=True)
    try:
        options = server_options(plain_asyncio) | {
            "log_level": "warning" if quiet else "info", "access_log": not quiet}
        if workers == 1:
            app = build_app(config)
            app.state.worker = worker          # /health reads what its consumers decide
            uvicorn.run(app, host=host, port=port, **options)
        else:   # /health in those processes cannot see this process's worker
            os.environ[CONFIG_ENV] = json.dumps(dataclasses.asdict(config))
            uvicorn.run("couponsim.service.serve:app_from_env", factory=True, workers=workers,
                        host=host, port=port, **options)
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


def work(config: ServiceConfig, worker: WorkerConfig | None = None) -> None:
    """The worker alone, in the foreground, for a service whose instances run none; its
    consumers key the coupon codes with ``config``'s secret (``COUPONSIM_SECRET``)."""
    repository = Repository.from_url(config.db_url)
    try:
        Worker(config.redis_url, repository, worker or WorkerConfig(),
               codes=config.codes()).run_until_stopped()
    finally:
        repository.engine.dispose()
