"""``couponsim calibrate`` and latency profiles: a profile fills the scenario's
``[latency]`` under the fields the scenario and ``--set`` give; calibrate measures
fakeredis + SQLite and a real Redis + PostgreSQL, writes a complete profile a
scenario loads, and leaves nothing behind in Redis or the database."""

import tomllib
import uuid
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

import couponsim.calibrate as calibrate_module
from couponsim.bundled import bundled_dir
from couponsim.calibrate import CHARGED, CalibrationPlan, calibrate, fit_batch_cost, save_profile
from couponsim.cli import EXIT_UNUSABLE, main
from couponsim.connection import connect
from couponsim.errors import InvalidInput
from couponsim.latency_profile import profile_names
from couponsim.persistence.models import Base
from couponsim.persistence.repository import Repository
from couponsim.sim.scenario import LatencySpec, load_scenario

SMALL = CalibrationPlan(pings=40, users=60, status_reads=40, room_users=30,
                        batch_sizes=(1, 50, 200),
                        batch_repeats=3, pubsub_messages=30)
"""Enough of everything for each table of the profile, quick enough for the suite."""


def _profile_file(path: Path, **latency: Any) -> Path:
    body = "\n".join(f"{name} = {value!r}" for name, value in latency.items())
    path.write_text(f"[latency]\n{body}\n")
    return path


def _scenario_file(path: Path, latency: str) -> Path:
    path.write_text(f'name = "profiled"\n[event]\ncoupon_id = "p"\n[latency]\n{latency}\n')
    return path


def test_a_profile_fills_the_fields_the_scenario_does_not_set(tmp_path: Path) -> None:
    profile = _profile_file(tmp_path / "measured.toml", network_ms=0.3, redis_command_ms=0.004,
                            redis_script_ms=0.03, database_batch_ms=9.0, database_row_ms=0.2)
    scenario = _scenario_file(tmp_path / "s.toml",
                              f'profile = "{profile}"\ndatabase_batch_ms = 2.5')
    latency = load_scenario(str(scenario)).latency
    assert latency == LatencySpec(network_ms=0.3, redis_command_ms=0.004, redis_script_ms=0.03,
                                  database_batch_ms=2.5, database_row_ms=0.2,
                                  profile=str(profile))


def test_set_overrides_the_profile_and_the_scenario(tmp_path: Path) -> None:
    profile = _profile_file(tmp_path / "measured.toml", network_ms=0.3, database_row_ms=0.2)
    scenario = _scenario_file(tmp_path / "s.toml", f'profile = "{profile}"\nnetwork_ms = 1.0')
    latency = load_scenario(str(scenario), ["latency.network_ms=2.0",
                                            "latency.database_row_ms=0.7"]).latency
    assert (latency.network_ms, latency.database_row_ms) == (2.0, 0.7)
    assert latency.redis_script_ms == LatencySpec().redis_script_ms   # neither gave it


def test_a_profile_named_by_set_stands_over_the_file_but_under_other_sets(
        tmp_path: Path) -> None:
    profile = _profile_file(tmp_path / "measured.toml", network_ms=0.2, redis_script_ms=0.5,
                            database_row_ms=0.3)
    scenario = _scenario_file(tmp_path / "s.toml", "network_ms = 1.0\nredis_command_ms = 0.7")
    latency = load_scenario(str(scenario), ["latency.database_row_ms=0.9",
                                            f'latency.profile="{profile}"']).latency
    assert (latency.network_ms, latency.redis_script_ms, latency.database_row_ms) \
        == (0.2, 0.5, 0.9)
    assert latency.redis_command_ms == LatencySpec().redis_command_ms   # the file's is gone


def test_a_bundled_scenario_runs_on_a_bundled_profile() -> None:
    measured = tomllib.loads((bundled_dir("profiles") / "local-redis-postgres.toml")
                             .read_text())["latency"]
    latency = load_scenario("black_friday", ["latency.profile=local-redis-postgres"]).latency
    assert {name: getattr(latency, name) for name in CHARGED} == measured


@pytest.mark.parametrize("name", profile_names())
def test_the_bundled_profiles_load_by_name_and_give_every_charged_field(
        tmp_path: Path, name: str) -> None:
    document = tomllib.loads((bundled_dir("profiles") / f"{name}.toml").read_text())
    assert set(document["latency"]) == set(CHARGED)
    scenario = _scenario_file(tmp_path / "s.toml", f'profile = "{name}"')
    latency = load_scenario(str(scenario)).latency
    assert latency.profile == name
    assert {field: getattr(latency, field) for field in CHARGED} == document["latency"]


def test_two_profiles_are_bundled() -> None:
    assert len(profile_names()) >= 2


@pytest.mark.parametrize(("profile", "message"), [
    ("no-such-profile", "no latency profile 'no-such-profile'"),
    ("missing.toml", "cannot read latency profile"),
    ("empty.toml", "has no [latency] table"),
    ("unknown.toml", "unknown field(s) latency.warp_ms"),
    ("negative.toml", "latency.network_ms must not be negative"),
])
def test_bad_profiles_are_refused_naming_what_is_wrong(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, profile: str, message: str) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "empty.toml").write_text("[profile]\nhost = 'x'\n")
    _profile_file(tmp_path / "unknown.toml", warp_ms=1.0)
    _profile_file(tmp_path / "negative.toml", network_ms=-1.0)
    scenario = _scenario_file(tmp_path / "s.toml", f'profile = "{profile}"')
    with pytest.raises(InvalidInput, match=message.replace("[", r"\[").replace("(", r"\(")
                       .replace(")", r"\)")):
        load_scenario(str(scenario))


def test_the_database_fit_recovers_a_known_batch_and_row_cost() -> None:
    times = {size: [5.0 + 0.25 * size + noise for noise in (-0.1, 0.0, 40.0)]
             for size in (1, 10, 50, 100)}   # one hiccup per size: the medians ignore it
    batch_ms, row_ms, r2 = fit_batch_cost(times)
    assert batch_ms == pytest.approx(5.0)
    assert row_ms == pytest.approx(0.25)
    assert r2 == pytest.approx(1.0)


class _NoisyDatabase:
    """A database whose first round is hidden by noise (bigger batches answer faster),
    and whose later rounds cost 2 ms a batch and 0.1 ms a row, on a clock it moves."""

    def __init__(self, noisy_batches: int) -> None:
        self.now_ns = 0
        self.noisy_batches = noisy_batches
        self.batches = 0

    def save_coupon(self, event: Any) -> None:
        self.stock = event.stock

    def persist_issued(self, batch: list[Any]) -> None:
        self.batches += 1
        noisy = self.batches <= self.noisy_batches
        cost_ms = 30.0 - 0.1 * len(batch) if noisy else 2.0 + 0.1 * len(batch)
        self.now_ns += int(cost_ms * 1e6)


@pytest.mark.parametrize("noisy_rounds, rounds", [(0, 1), (1, 3), (2, 4)])
def test_the_database_is_measured_again_while_noise_hides_the_row_cost(
        monkeypatch: pytest.MonkeyPatch, noisy_rounds: int, rounds: int) -> None:
    sizes, repeats = (1, 50), 2
    database = _NoisyDatabase(noisy_batches=noisy_rounds * len(sizes) * repeats)
    monkeypatch.setattr(calibrate_module.time, "perf_counter_ns", lambda: database.now_ns)
    bar = calibrate_module.tqdm(total=len(sizes) * repeats, disable=True)
    times = calibrate_module._database(database, "c", sizes, repeats,  # type: ignore[arg-type]
                                       bar)
    assert {size: len(values) for size, values in times.items()} == {
        size: rounds * repeats for size in sizes}
    assert database.stock == sum(sizes) * repeats * calibrate_module.DATABASE_ROUNDS
    batch_ms, row_ms, _ = fit_batch_cost(times)
    assert (batch_ms > 0 and row_ms > 0) == (noisy_rounds < rounds / 2)


def test_a_plan_needs_two_batch_sizes() -> None:
    with pytest.raises(InvalidInput, match="at least two different"):
        CalibrationPlan(batch_sizes=(50, 50))


def _rows(repository: Repository) -> dict[str, int]:
    with repository.engine.connect() as connection:
        return {table.name: connection.execute(select(func.count()).select_from(table))
                .scalar_one() for table in Base.metadata.sorted_tables}


def _check_profile(path: Path) -> dict[str, Any]:
    """The file a scenario loads: every charged field, consistent distributions."""
    document = tomllib.loads(path.read_text())
    latency = load_scenario(str(_scenario_file(path.with_name("s.toml"),
                                               f'profile = "{path}"'))).latency
    assert {item.name for item in fields(latency)} - {"profile"} == set(document["latency"])
    distributions = [document["ping_rtt_ms"], document["pubsub_ms"],
                     *document["client_ms"].values(), *document["database_ms"].values()]
    for table in distributions:
        assert table["n"] >= 1
        assert 0 < table["p50"] <= table["p90"] <= table["p99"] <= table["max"]
        assert 0 < table["mean"] <= table["max"]
    assert {"script_issue", "script_finalize", "command_hgetall", "db_persist_issued",
            "script_room_join", "script_room_admit", "script_room_settle"} \
        <= set(document["client_ms"])
    assert document["database_fit"]["sizes"] == [1, 50, 200]
    return document


def test_calibrate_on_fakeredis_and_sqlite(tmp_path: Path) -> None:
    redis_url = f"fake://calibrate-{uuid.uuid4().hex}"
    db_url = f"sqlite:///{tmp_path / 'coupons.sqlite'}"
    calibration = calibrate(redis_url, db_url, SMALL, progress=False)
    save_profile(calibration, tmp_path / "fake.toml")
    document = _check_profile(tmp_path / "fake.toml")
    latency = document["latency"]
    assert latency["network_ms"] == 0   # in the client's process: no network
    assert all(latency[name] > 0 for name in CHARGED if name != "network_ms")
    assert "unavailable" in document["profile"]["server_stats"]
    assert document["profile"]["redis_server"].startswith("fakeredis ")
    assert "server_ms" not in document
    assert connect(redis_url).keys("*") == []
    assert set(_rows(Repository.from_url(db_url)).values()) == {0}


def test_a_calibration_that_fails_midway_leaves_nothing_behind(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*_args: object) -> list[float]:
        raise InvalidInput("pub/sub broke")

    monkeypatch.setattr(calibrate_module, "_pubsub", broken)   # the last phase
    redis_url = f"fake://calibrate-{uuid.uuid4().hex}"
    db_url = f"sqlite:///{tmp_path / 'coupons.sqlite'}"
    with pytest.raises(InvalidInput, match="pub/sub broke"):
        calibrate(redis_url, db_url, SMALL, progress=False)
    assert connect(redis_url).keys("*") == []
    assert set(_rows(Repository.from_url(db_url)).values()) == {0}


@pytest.mark.slow
@pytest.mark.real_redis
@pytest.mark.postgres
def test_calibrate_on_a_real_redis_and_postgresql(tmp_path: Path, real_redis_url: str,
                                                  postgres_url: str) -> None:
    """On a private redis-server (local://): the suite's shared server counts the other
    test processes' commands too, and the call counts below must be this run's alone."""
    redis_url = f"local://calibrate-{tmp_path.name}"[:40]
    client = connect(redis_url)
    repository = Repository.from_url(postgres_url)
    repository.drop_schema()
    try:
        calibration = calibrate(redis_url, postgres_url, SMALL, progress=False)
        save_profile(calibration, tmp_path / "real.toml")
        document = _check_profile(tmp_path / "real.toml")
        assert all(document["latency"][name] > 0 for name in CHARGED)
        assert document["profile"]["server_stats"] == "INFO commandstats deltas"
        assert document["profile"]["redis_server"].startswith("redis ")
        assert document["profile"]["database_backend"] == "postgresql"
        server = document["server_ms"]
        assert server["issue_evalsha"]["calls"] == SMALL.issue_requests() == 66
        assert server["status_hgetall"]["calls"] == SMALL.status_reads
        assert server["room_join_evalsha"]["calls"] == SMALL.room_users
        assert document["server_quiet"] == {"issue_scripts": True, "status_commands": True}
        # the server's time of a script is a part of the client's
        assert server["issue_evalsha"]["mean"] < document["client_ms"]["script_issue"]["mean"]
        assert client.dbsize() == 0
        assert set(_rows(repository).values()) == {0}
    finally:
        repository.drop_schema()
        repository.engine.dispose()
        client.flushdb()
        client.close()


@pytest.mark.parametrize(("redis_url", "db_url", "message"), [
    ("mysql://127.0.0.1/0", "sqlite:///{tmp}/c.sqlite", "unknown Redis URL"),
    ("redis://127.0.0.1:1/0", "sqlite:///{tmp}/c.sqlite", "cannot use Redis"),
    ("redis+cluster://127.0.0.1:1", "sqlite:///{tmp}/c.sqlite", "one Redis server"),
    ("fake://bad-db", "oracle://x", "unsupported database"),
    ("fake://bad-db", "postgresql+psycopg://postgres@127.0.0.1:1/none", "did not answer"),
])
def test_unusable_urls_exit_2_and_write_nothing(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], redis_url: str, db_url: str,
        message: str) -> None:
    out = tmp_path / "profile.toml"
    code = main(["calibrate", "--redis-url", redis_url, "--db-url",
                 db_url.format(tmp=tmp_path), "--out", str(out)])
    assert code == EXIT_UNUSABLE
    assert message in capsys.readouterr().err
    assert not out.exists()
    assert connect("fake://bad-db").keys("*") == []


@pytest.mark.slow
def test_the_command_writes_a_profile_a_scenario_loads(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "profile.toml"
    code = main(["calibrate", "--redis-url", f"fake://cli-{uuid.uuid4().hex}", "--db-url",
                 f"sqlite:///{tmp_path / 'c.sqlite'}", "--out", str(out)])
    assert code == 0
    assert f"latency profile written to {out}" in capsys.readouterr().out
    latency = tomllib.loads(out.read_text())["latency"]
    loaded = load_scenario("black_friday", [f'latency.profile="{out}"'])
    assert loaded.latency.profile == str(out)
    assert set(latency) == set(CHARGED)
