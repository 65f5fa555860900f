"""The twin check at a tiny size on the real backends: the live service and the model
replay the same plan, the live run's real state keeps every invariant, and every
metric is there. Timings are reported by benchmarks/twin_check.py, never asserted."""

import math
import os
import statistics
from dataclasses import astuple

import pandas as pd
import pytest

from couponsim.calibrate import CalibrationPlan
from couponsim.twin import METRICS, ROOM_METRICS, Level, room_empty_s, twin_check

TINY = (Level("keeps up", users=60, stock=12, spread_s=0.5, consumer_batch=50),
        Level("saturates", users=60, stock=12, spread_s=0.5, consumer_batch=1),
        Level("gateway engaged", users=60, stock=12, spread_s=0.5, consumer_batch=50,
              rate_limit_per_s=4, admission_batch=1))
QUICK = CalibrationPlan(pings=50, users=100, status_reads=50, room_users=20,
                        batch_sizes=(1, 50, 200), batch_repeats=5, pubsub_messages=20)


@pytest.mark.slow
@pytest.mark.real_redis
@pytest.mark.postgres
def test_the_twin_check_replays_one_plan_live_and_in_the_model(real_redis_url: str,
                                                                 postgres_url: str) -> None:
    result = twin_check(real_redis_url, postgres_url, runs=1, chosen=TINY, plan_size=QUICK)
    assert [level.level for level in result.levels] == list(TINY)
    for level in result.levels:
        planned = sorted((c.user, c.request, c.kind.value, c.at_ms) for c in level.clicks)
        assert sum(c.kind.value == "double click" for c in level.clicks) > 0
        model = level.model.requests
        assert sorted(zip(model.user, model.click, model.kind, strict=True)) \
            == [p[:3] for p in planned]
        assert sorted(model.pressed_ms) == pytest.approx(sorted(p[3] for p in planned),
                                                         abs=1e-3)
        assert level.model.report.ok, level.model.report
        instance = level.instance
        assert instance is not None and all(0 < v < 100 for v in astuple(instance)), \
            "the model's instance has the CPU and round trip measured on the live one"
        answer_ms = model.answered_ms - model.pressed_ms      # float32 in the table
        assert answer_ms.min() >= instance.cpu_ms + instance.client_rtt_ms - 1e-3
        assert set(model.final_state) <= {"COMPLETED", "SOLD_OUT", "DUPLICATE"}
        assert level.host is not None and level.host.cores == os.cpu_count()
        assert 0 < level.host.background_cores == pytest.approx(statistics.median(
            run.cores["load generator"] + run.cores["Redis"] for run in level.live))
        for live in level.live:
            requests = live.requests
            assert sorted(zip(requests.user, requests.click, requests.kind, strict=True)) \
                == [p[:3] for p in planned]
            assert sorted(requests.planned_ms) == pytest.approx(sorted(p[3] for p in planned),
                                                                abs=1e-3)
            assert live.report.ok, live.report.checks
            assert (live.report.persisted, live.report.stock_left, live.report.in_flight) \
                == (level.level.stock, 0, 0)
            assert len(live.coupons) == level.level.stock
            assert live.coupons.stored_ms.notna().all()     # every row stamped by the database
            assert set(requests.final_state) <= {"COMPLETED", "SOLD_OUT", "DUPLICATE"}
            assert (requests.served_ms > 0).all(), "every answer says its time in the service"
            assert (requests.served_ms < requests.answered_ms - requests.pressed_ms).all()
            assert live.cores.keys() == {"service", "worker", "Redis", "load generator"}
            assert live.cores["service"] > 0 and live.cores["worker"] > 0
            room = live.room.waiting
            if level.level.gateway:   # the crowd met the limit and waited: the room filled
                assert set(requests.answer) >= {"QUEUED"}
                assert room.max() > 0 and room.iloc[-1] == 0
            else:
                assert (room == 0).all() and "QUEUED" not in set(requests.answer)
        table = level.table()
        room_keys = list(ROOM_METRICS) if level.level.gateway else []
        assert list(table.key) == list(METRICS) + room_keys
        if level.level.gateway:
            assert level.model.metrics()["room_peak"] > 0
        assert all(math.isfinite(v) for v in (*table.live_median, *table.simulated,
                                              *table.error_pct))
    assert all(math.isfinite(v) for v in result.profile.values())


def test_the_room_is_empty_for_good_at_the_first_reading_after_its_last_waiter() -> None:
    room = pd.DataFrame({"at_ms": [0, 100, 200, 300, 400, 500, 600],
                         "waiting": [0, 3, 0, 2, 5, 0, 0]})   # it empties, then fills again
    assert room_empty_s(room) == 0.5
    assert math.isnan(room_empty_s(room.assign(waiting=0))), "never held anyone"
    assert math.isnan(room_empty_s(room.iloc[:5])), "never empty again"
