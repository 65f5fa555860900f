"""schemathesis against the service's own OpenAPI schema, in-process over ASGI: for
requests it generates from the schema (valid ones and, in its negative mode, invalid
ones, and methods a route does not have), no answer is a server error and every answer
is one the schema documents: its status, media type, headers and body. Bounded: a few
dozen examples per operation, so CI runs it every time.

Not checked: that every schema-valid request is accepted and every invalid one refused
(schemathesis' positive_data_acceptance and negative_data_rejection). The schema states
the ID rules for the identity and Idempotency-Key headers only; path and body IDs are
plain strings there, refused with 400 when they break the rules.
"""

from collections.abc import Iterator

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.python.asgi import shutdown_lifespans
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
    unsupported_method,
)

from couponsim.service.app import build_app
from couponsim.service.config import ServiceConfig

ADMIN_TOKEN = "admin-secret"
EXAMPLES = 25
"""Per operation and generation phase: enough to reach every validation path of a
route (missing, malformed and oversized fields and headers), few enough for CI."""
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_headers_conformance, response_schema_conformance, unsupported_method]


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FastAPI]:
    """The app on the embedded defaults (a fake:// server and a SQLite file of its own).
    schemathesis starts its lifespan at the first call and keeps it for the process, so
    it is shut down here, not at exit."""
    directory = tmp_path_factory.mktemp("schema")
    yield build_app(ServiceConfig(redis_url=f"fake://schema-{directory.name}",
                                  db_url=f"sqlite:///{directory / 'schema.sqlite'}",
                                  admin_token=ADMIN_TOKEN, stream_timeout_s=1))
    shutdown_lifespans()


# The schema the app serves at /openapi.json, which depends on no configuration. Loaded
# from the app's dict rather than with from_asgi, which would start the app (Redis
# client, database file) while pytest collects; from_fixture, which would not, fails
# on pytest 9 (schemathesis 4.32 reads a private attribute of pytest's test item).
schema = schemathesis.openapi.from_dict(build_app(ServiceConfig()).openapi())


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@pytest.mark.slow
def test_no_server_error_and_every_answer_is_documented(case: schemathesis.Case,
                                                        app: FastAPI) -> None:
    """The admin token goes with every request so that defining events is explored past
    the token check (header identity ignores Authorization for users)."""
    case.call_and_validate(app=app, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
                           checks=CHECKS)
