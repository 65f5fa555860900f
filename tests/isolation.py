"""Each test process gets real services of its own: a Redis database and a PostgreSQL
schema no other process uses, so pytest-xdist's workers, and several runs of the suite
on one machine (a developer's beside CI's), never see each other's keys or rows.

- Redis: the databases of the ``REDIS_URL`` server, counting down from the URL's own
  number (0 is left to whoever else uses the server). A database is held by a file lock
  in the machine's temporary directory for the whole session; the lock goes with the
  process, however it ends, so a killed run frees its database.
- PostgreSQL: a schema of its own, named after the process, made at the start and
  dropped (CASCADE) at the end; the URL it hands out sets ``search_path`` to it, so
  the code under test (and any ``couponsim`` process a test starts with that URL)
  creates and reads its tables there without knowing.
- Pub/sub channels are the one thing Redis does not scope by database: ``tests/__init__``
  gives each process its own channel namespace (``COUPONSIM_CHANNEL_NAMESPACE``).

Locks are per machine: two machines sharing one Redis server are not kept apart.
"""

import os
import secrets
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import redis
import sqlalchemy
from filelock import FileLock, Timeout
from sqlalchemy.engine import make_url

LEASES = Path(tempfile.gettempdir()) / "couponsim-test-leases"
"""Where the file locks on Redis databases live (one file per server and database)."""


class NoFreeDatabase(RuntimeError):
    """Every Redis database the suite may use is held by another test process."""


def _databases(client: "redis.Redis[str]") -> int:
    """How many databases the server has (16 unless configured; CONFIG may be refused)."""
    try:
        return int(client.config_get("databases")["databases"])
    except (redis.ResponseError, KeyError):
        return 16


@contextmanager
def leased_redis_database(url: str) -> Iterator[str]:
    """``url`` pointed at a database of its server that this process alone holds,
    trying the URL's own number first, then each lower one down to 1."""
    parts = urlsplit(url)
    client: redis.Redis[str] = redis.Redis.from_url(url, decode_responses=True)
    try:
        first = min(int(client.connection_pool.connection_kwargs.get("db", 0)),
                    _databases(client) - 1)
    finally:
        client.close()
    LEASES.mkdir(exist_ok=True)
    for db in range(first, 0, -1):
        lock = FileLock(LEASES / f"redis-{parts.hostname}-{parts.port or 6379}-{db}.lock")
        try:
            lock.acquire(timeout=0)
        except Timeout:
            continue
        try:
            yield parts._replace(path=f"/{db}").geturl()
        finally:
            lock.release()
        return
    raise NoFreeDatabase(f"databases 1 to {first} of {parts.netloc} are all held by other "
                         f"test processes (locks in {LEASES})")


@contextmanager
def private_postgres_schema(url: str) -> Iterator[str]:
    """``url`` with ``search_path`` set to a schema made for this process, dropped after."""
    schema = f"couponsim_test_{os.getpid()}_{secrets.token_hex(3)}"
    engine = sqlalchemy.create_engine(url)
    with engine.begin() as connection:
        connection.execute(sqlalchemy.text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield make_url(url).update_query_dict({"options": f"-csearch_path={schema}"}) \
            .render_as_string(hide_password=False)
    finally:
        with engine.begin() as connection:
            connection.execute(sqlalchemy.text(f'DROP SCHEMA "{schema}" CASCADE'))
        engine.dispose()
