"""Rules every script in lua/ must keep to run on a real Redis and a Redis Cluster."""

import re
from pathlib import Path

import pytest
from redis.crc import key_slot

from couponsim.consumers import drain, drain_seed
from couponsim.drivers.sync import SyncDriver
from couponsim.effects import Effect, Script
from couponsim.event import CouponEvent
from couponsim.flows import Variant, lifecycle
from couponsim.flows.consume import ConsumerConfig
from couponsim.flows.issue import ISSUE_FLOWS, IssueRequest
from couponsim.flows.redeem import APPLY_FLOWS
from couponsim.flows.throttle import SharedLimit, acquire_shared
from couponsim.flows.waiting_room import admit, join_room, leave_room, room_outcome
from couponsim.persistence.repository import Repository
from couponsim.pricing import ApplyRequest
from couponsim.scripts import lua_dir, script_names
from couponsim.verify import check_invariants

from .conftest import Backend
from .test_consumers import PoisonRepository

LUA_FILES = sorted(lua_dir().glob("*.lua"))

BANNED = {
    r"\bos\.": "os.* (real Redis has no os library)",
    r"\bbit\.": "bit.* (not in fakeredis)",
    r"\bcmsgpack\b": "cmsgpack (not in fakeredis)",
    r"\bstruct\.": "struct.* (not in fakeredis)",
    r"\bredis\.sha1hex\b": "redis.sha1hex (not in fakeredis)",
    r"\bTIME\b": "Redis TIME (times come from the caller's clock)",
}


def _code(path: Path) -> str:
    """The script without comments and string literals, so only code is judged."""
    text = path.read_text()
    text = re.sub(r"--\[\[.*?\]\]", "", text, flags=re.S)
    text = re.sub(r"--[^\n]*", "", text)
    return re.sub(r"'[^'\n]*'|\"[^\"\n]*\"", "''", text)


def _global_assignments(code: str) -> list[str]:
    """Names assigned without ``local`` that were never declared local (Redis refuses them)."""
    declared: set[str] = set()
    for match in re.finditer(r"\blocal\s+(?:function\s+)?([\w\s,]+?)(?:=|\n|$)", code):
        declared |= {name.strip() for name in match.group(1).split(",")}
    for match in re.finditer(r"\bfor\s+([\w\s,]+?)\s*(?:=|\bin\b)", code):
        declared |= {name.strip() for name in match.group(1).split(",")}
    assigned = re.findall(r"(?:^|[;\s])([A-Za-z_]\w*(?:\s*,\s*[A-Za-z_]\w*)*)\s*=(?!=)", code)
    names = {name.strip() for group in assigned for name in group.split(",")}
    names |= set(re.findall(r"(?<!local )\bfunction\s+([A-Za-z_]\w*)\s*\(", code))
    return sorted(names - declared - {"local"})


def test_lua_dir_holds_the_scripts() -> None:
    assert {"issue", "seed_decrement", "transition", "warmup"} <= set(script_names())


@pytest.mark.parametrize("path", LUA_FILES, ids=lambda p: p.name)
def test_script_uses_nothing_real_redis_or_fakeredis_lacks(path: Path) -> None:
    code = _code(path)
    found = [why for pattern, why in BANNED.items() if re.search(pattern, code)]
    assert not found, f"{path.name} uses {found}"
    assert not _global_assignments(code), f"{path.name} assigns globals"


@pytest.mark.parametrize("path", LUA_FILES, ids=lambda p: p.name)
def test_script_header_names_keys_argv_and_returns(path: Path) -> None:
    header = path.read_text().split("\n\n", 1)[0]
    assert header.startswith(f"-- {path.name}:")
    assert "KEYS[1]" in header and "Returns" in path.read_text()


def test_the_global_check_catches_globals() -> None:
    assert _global_assignments("x = 1\nlocal y = 2\ny = 3\nfunction f() end") == ["f", "x"]
    assert _global_assignments("local a, b = 1, 2\nfor i = 1, 3 do a = i end") == []


class RecordingDriver(SyncDriver):
    def __init__(self, backend: Backend, repository: Repository) -> None:
        super().__init__(backend.client, backend.url, repository)
        self.script_calls: list[Script] = []

    def execute(self, effect: Effect) -> object:
        if isinstance(effect, Script):
            self.script_calls.append(effect)
        return super().execute(effect)


def test_no_script_call_spans_two_cluster_slots(fake_backend: Backend,
                                                sqlite_repository: Repository) -> None:
    """Every script every flow sends keeps all its KEYS in one slot (no CROSSSLOT)."""
    driver = RecordingDriver(fake_backend, PoisonRepository(sqlite_repository, "u2-r"))
    for variant, coupon in ((Variant.HARDENED, "h1"), (Variant.SEED, "s1")):
        event = CouponEvent(coupon, stock=2)
        if variant is Variant.HARDENED:
            driver.run(lifecycle.warm_up(event))  # warmed twice: REWARMED is sent too
        driver.run(lifecycle.open_event(event, variant))
        for user in ("u1", "u1", "u2"):
            driver.run(ISSUE_FLOWS[variant](IssueRequest(coupon, user, f"{user}-r"), 1))
        if variant is Variant.SEED:
            drain_seed(driver)
        else:
            drain(driver, coupon, config=ConsumerConfig(claim_idle_ms=0, max_deliveries=1))
        if variant is Variant.HARDENED:
            for user in ("w1", "w2"):
                driver.run(join_room(coupon, user, f"{user}-q", 3))
            driver.run(leave_room(coupon, "w2"))
            driver.run(room_outcome(coupon, "w1"))
            driver.run(admit(coupon, 5, 4))
            driver.run(acquire_shared(SharedLimit("slots", 5, 1000), 5))
        for code in [c.code for c in driver.repository.coupons_of("u1")]:  # type: ignore[union-attr]
            driver.run(APPLY_FLOWS[variant](ApplyRequest("u1", "o1", code, 50_000), 2))
        driver.run(check_invariants(coupon, with_database=True))
        driver.run(lifecycle.end(coupon))
        driver.run(lifecycle.purge(coupon))

    assert {call.name for call in driver.script_calls} == set(script_names())
    for call in driver.script_calls:
        slots = {key_slot(key.encode()) for key in call.keys}
        assert len(slots) == 1, f"{call.name} spans slots {slots}: {call.keys}"
