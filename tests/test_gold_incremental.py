"""Incremental gold equals a full rebuild on the same silver data, table by table."""

from __future__ import annotations

import logging
import random
import shutil
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from pyspark.sql import SparkSession
from pyspark.sql.types import DataType, StructType

from adlake import deltalog, storage
from adlake.config import AppConfig
from adlake.gold import incremental as inc
from adlake.gold.run import build_gold
from adlake.tables import (
    GOLD_CAMPAIGN_ATTRIBUTION_DAILY,
    GOLD_CONVERSION_ATTRIBUTION,
    GOLD_STATE_TABLES,
    GOLD_TABLES,
    SILVER_BID_REQUESTS,
    SILVER_CLICKS,
    SILVER_CONVERSIONS,
    SILVER_CREATIVES,
    SILVER_IMPRESSIONS,
    TableSpec,
)
from tests.conftest import config_for

START = datetime(2024, 3, 1, tzinfo=timezone.utc)
USERS = [f"u{i}" for i in range(14)] + [None]
CREATIVES = {f"c{i}": f"k{i % 3}" for i in range(6)}
WEBSITES = ["a.com", "b.com", "c.com", "d.com", None]
EVENT_TABLES = (SILVER_IMPRESSIONS, SILVER_CLICKS, SILVER_CONVERSIONS, SILVER_BID_REQUESTS)


def _row(spec: TableSpec, **values: Any) -> tuple[Any, ...]:
    ts = values["event_ts"]
    seconds = int(ts.timestamp())
    values.setdefault("event_date", date(1970, 1, 1) + timedelta(days=seconds // 86_400))
    values.setdefault("event_hour", (seconds % 86_400) // 3_600)
    return tuple(values.get(f.name) for f in spec.schema.fields)


def _events(seed: int, first_day: int, last_day: int, users: list[str | None], n: int) -> dict:
    """Random impressions (with bid requests), clicks and conversions; ids unique per seed."""
    rnd = random.Random(seed)
    rows: dict[TableSpec, list[tuple[Any, ...]]] = {spec: [] for spec in EVENT_TABLES}
    for i in range(n):
        ts = START + timedelta(days=rnd.randint(first_day, last_day), seconds=rnd.randrange(86_400))
        user, creative = rnd.choice(users), rnd.choice(list(CREATIVES))
        auction = f"a{seed}-{i}"
        rows[SILVER_IMPRESSIONS].append(
            _row(
                SILVER_IMPRESSIONS,
                impression_id=f"i{seed}-{i}",
                event_ts=ts,
                user_id=user,
                creative_id=creative,
                campaign_id=None if i % 7 == 0 else CREATIVES[creative],
                website=rnd.choice(WEBSITES),
                auction_id=auction,
                cost=Decimal(rnd.randint(1, 500)) / 100,
            )
        )
        for b in range(rnd.randint(1, 2)):
            rows[SILVER_BID_REQUESTS].append(
                _row(
                    SILVER_BID_REQUESTS,
                    request_id=f"r{seed}-{i}-{b}",
                    auction_id=auction,
                    event_ts=ts - timedelta(seconds=1),
                    user_id=user,
                    country=rnd.choice(["US", "DE"]),
                    bid_amount=Decimal(rnd.randint(1, 900)) / 100,
                    creative_id=creative,
                    campaign_id=CREATIVES[creative],
                    website=rnd.choice(WEBSITES),
                )
            )
        if rnd.random() < 0.3:
            rows[SILVER_CLICKS].append(
                _row(
                    SILVER_CLICKS,
                    event_id=f"k{seed}-{i}",
                    event_ts=ts + timedelta(minutes=rnd.randint(0, 600)),
                    user_id=user,
                    campaign_id=CREATIVES[creative],
                    creative_id=creative,
                    conversion_type="click",
                )
            )
        if rnd.random() < 0.15:
            rows[SILVER_CONVERSIONS].append(
                _row(
                    SILVER_CONVERSIONS,
                    event_id=None if i % 11 == 0 else f"v{seed}-{i}",
                    event_ts=ts + timedelta(hours=rnd.randint(0, 200)),
                    user_id=user,
                    campaign_id=CREATIVES[creative],
                    conversion_type="purchase",
                    revenue=None if i % 5 == 0 else Decimal(rnd.randint(100, 9_000)) / 100,
                )
            )
    return rows


def _append(spark: SparkSession, cfg: AppConfig, rows: dict) -> None:
    for spec, values in rows.items():
        location = spec.location(cfg)
        storage.ensure_table(spark, spec, location)
        df = spark.createDataFrame(values, spec.schema)
        if spec.keys and all(v[spec.schema.fieldNames().index(spec.keys[0])] for v in values):
            storage.merge_insert_new(df, spec, location, {v[2] for v in values})
        else:  # null keys: a plain append, as a late-arriving file would be
            df.write.format("delta").mode("append").save(location)


def _creatives(spark: SparkSession, cfg: AppConfig) -> None:
    rows = [(c, k, f"adv{k}", c, "banner", "ref.csv", START) for c, k in CREATIVES.items()]
    location = SILVER_CREATIVES.location(cfg)
    storage.replace_table(
        spark.createDataFrame(rows, SILVER_CREATIVES.schema), SILVER_CREATIVES, location, "v1"
    )


def _rows(spark: SparkSession, cfg: AppConfig, spec: TableSpec) -> list[tuple[Any, ...]]:
    """Rows sorted by their non-double fields, then doubles rounded to 6 digits."""
    rows = [tuple(r) for r in storage.read_table(spark, spec.location(cfg)).collect()]

    def key(row: tuple[Any, ...]) -> str:
        exact = [repr(v) for v in row if not isinstance(v, float)]
        return repr((exact, [round(v, 6) for v in row if isinstance(v, float)]))

    return sorted(rows, key=key)


def _same(x: Any, y: Any) -> bool:
    if isinstance(x, float) and isinstance(y, float):
        return abs(x - y) <= 1e-9 * max(1.0, abs(x), abs(y))
    return bool(x == y)


def _assert_tables_equal(spark: SparkSession, left: AppConfig, right: AppConfig) -> None:
    for spec in (*GOLD_TABLES, *GOLD_STATE_TABLES):
        a, b = _rows(spark, left, spec), _rows(spark, right, spec)
        assert len(a) == len(b), spec.name
        for x, y in zip(a, b, strict=True):
            assert all(map(_same, x, y)), (spec.name, x, y)


def _assert_declared_schemas(spark: SparkSession, cfg: AppConfig) -> None:
    """Every gold and gold state table has the field names and types (in order;
    nullability aside) of its `spec.schema`."""

    def fields(schema: StructType) -> list[tuple[str, DataType]]:
        return [(f.name, f.dataType) for f in schema.fields]

    for spec in (*GOLD_TABLES, *GOLD_STATE_TABLES):
        built = storage.read_table(spark, spec.location(cfg)).schema
        assert fields(built) == fields(spec.schema), spec.name


def _cross_campaign_click(website: str, hour: int) -> dict:
    """u3's click on creative c0 booked to campaign k-other (not c0's campaign k0), a
    conversion of that campaign an hour after it, and an impression of c0 in k0 at `hour`
    on day 10, which serves the click its website."""
    day = START + timedelta(days=10)
    rows: dict[TableSpec, list[tuple[Any, ...]]] = {spec: [] for spec in EVENT_TABLES}
    rows[SILVER_IMPRESSIONS].append(
        _row(SILVER_IMPRESSIONS, impression_id=f"x-imp-{hour}", event_ts=day + timedelta(hours=hour),
             user_id="u3", creative_id="c0", campaign_id="k0", website=website,
             auction_id=f"x-a-{hour}", cost=Decimal("1.00"))
    )  # fmt: skip
    if hour == 9:  # the first batch: the click and its conversion
        rows[SILVER_CLICKS].append(
            _row(SILVER_CLICKS, event_id="x-click", event_ts=day + timedelta(hours=12),
                 user_id="u3", campaign_id="k-other", creative_id="c0", conversion_type="click")
        )  # fmt: skip
        rows[SILVER_CONVERSIONS].append(
            _row(SILVER_CONVERSIONS, event_id="x-conv", event_ts=day + timedelta(hours=13),
                 user_id="u3", campaign_id="k-other", conversion_type="purchase",
                 revenue=Decimal("50.00"))
        )  # fmt: skip
    return rows


@pytest.fixture(scope="module")
def built_base(spark: SparkSession, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A lakehouse root with silver of two batches (two files a day, so OPTIMIZE compacts)
    and gold built from them, shared by the tests that then change silver in their own
    copy (`_copy_of_base`): a gold build on a tiny lakehouse costs ~10 s of fixed jobs."""
    root = tmp_path_factory.mktemp("gold-base")
    cfg = config_for(root)
    _creatives(spark, cfg)
    _append(spark, cfg, _events(1, 0, 20, USERS[:12], 150))
    _append(spark, cfg, _events(4, 0, 20, USERS[:12], 150))
    build_gold(spark, cfg)
    return root


def _copy_of_base(base: Path, root: Path) -> AppConfig:
    shutil.copytree(base, root)
    return config_for(root)


def test_incremental_gold_equals_full_rebuild(spark: SparkSession, tmp_path: Path) -> None:
    """An increment (new and known users, a late impression and conversion, and an
    impression that changes the website of a click booked to another campaign) gives the
    tables a full rebuild gives; both builds write the declared schemas. (One lakehouse
    for both checks: a gold build on a tiny lakehouse costs ~10 s of fixed Spark jobs.)"""
    inc = config_for(tmp_path / "inc")
    full = config_for(tmp_path / "full")
    _creatives(spark, inc)
    batch_a = _events(1, 0, 20, USERS[:12], 400)
    for spec, rows in _cross_campaign_click("a.com", 9).items():
        batch_a[spec] += rows
    _append(spark, inc, batch_a)
    build_gold(spark, inc)
    _assert_declared_schemas(spark, inc)  # the first build is a full one
    before = {s.name: deltalog.table_version(spark, s.location(inc)) for s in GOLD_TABLES}

    # B: a few recent days, new and known users, plus one late impression and conversion.
    batch_b = _events(2, 19, 22, [*USERS[8:], "u-new"], 40)
    late = _events(3, 2, 2, USERS[:3], 3)
    served = _cross_campaign_click("z.com", 11)  # now the latest impression before the click
    for spec in EVENT_TABLES:
        batch_b[spec] += late[spec] + served[spec]
    _append(spark, inc, batch_b)
    build_gold(spark, inc)
    after = {s.name: deltalog.table_version(spark, s.location(inc)) for s in GOLD_TABLES}
    assert after == {name: v + 1 for name, v in before.items() if v is not None}
    _assert_declared_schemas(spark, inc)  # the incremental build

    for spec in (*EVENT_TABLES, SILVER_CREATIVES):
        shutil.copytree(spec.location(inc), full.table_path(spec.relative_path))
    build_gold(spark, full, full=True)
    _assert_tables_equal(spark, inc, full)
    click = storage.read_table(spark, GOLD_CONVERSION_ATTRIBUTION.location(inc)).where(
        "touch_id = 'x-click' AND model = 'last_touch'"
    )
    assert [r["website"] for r in click.collect()] == ["z.com"]

    # A run stopped after the attribution commit, before its daily table's: the next run
    # keeps every other table and rebuilds the daily one from the attribution table.
    by_day = GOLD_CAMPAIGN_ATTRIBUTION_DAILY
    expected = _rows(spark, full, by_day)
    shutil.rmtree(by_day.location(full))
    kept = {s.name: deltalog.table_version(spark, s.location(full)) for s in GOLD_TABLES}
    rows = build_gold(spark, full)
    assert rows[by_day.relative_path] == len(expected)
    assert _rows(spark, full, by_day) == expected
    assert {s.name: deltalog.table_version(spark, s.location(full)) for s in GOLD_TABLES} == {
        **kept,
        by_day.name: 0,
    }


def test_incremental_gold_equals_full_rebuild_after_optimize_moved_the_appended_rows(
    spark: SparkSession, tmp_path: Path, built_base: Path
) -> None:
    """OPTIMIZE (no VACUUM) after an append compacted the appended rows into new files:
    the rows gold last read are no longer the current rows outside the appended files, so
    the increment reads them by time travel, and equals a full build."""
    inc = _copy_of_base(built_base, tmp_path / "inc")
    full = config_for(tmp_path / "full")
    _append(spark, inc, _events(2, 15, 20, [*USERS[8:], "u-new"], 60))
    for spec in (SILVER_IMPRESSIONS, SILVER_CLICKS, SILVER_CONVERSIONS):
        spark.sql(f"OPTIMIZE delta.`{spec.location(inc)}`")
    build_gold(spark, inc)

    for spec in (*EVENT_TABLES, SILVER_CREATIVES):
        shutil.copytree(spec.location(inc), full.table_path(spec.relative_path))
    build_gold(spark, full, full=True)
    _assert_tables_equal(spark, inc, full)


@pytest.mark.parametrize("compacted", ["appended files", "recorded version"])
def test_incremental_gold_rebuilds_in_full_when_vacuum_removed_the_recorded_silver(
    spark: SparkSession,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    compacted: str,
    built_base: Path,
) -> None:
    """OPTIMIZE + VACUUM since gold's last build deleted either the files appended since
    (they were compacted) or those of the silver version gold recorded (its old Markov
    counts cannot be subtracted): gold starts over, with a warning, and equals a full build."""
    inc = _copy_of_base(built_base, tmp_path / "inc")
    full = config_for(tmp_path / "full")
    increment = _events(2, 19, 22, [*USERS[8:], "u-new"], 40)
    if compacted == "appended files":
        _append(spark, inc, increment)
    impressions = SILVER_IMPRESSIONS.location(inc)
    spark.sql(f"OPTIMIZE delta.`{impressions}`")
    checks = {
        "spark.databricks.delta.retentionDurationCheck.enabled": "false",
        "spark.databricks.delta.vacuum.retentionWindowIgnore.enabled": "false",
    }
    try:
        for key, value in checks.items():
            spark.conf.set(key, value)
        spark.sql(f"VACUUM delta.`{impressions}` RETAIN 0 HOURS")
    finally:
        for key in checks:
            spark.conf.unset(key)
    if compacted == "recorded version":
        _append(spark, inc, increment)

    vacuumed = spark.sql(f"DESCRIBE HISTORY delta.`{impressions}`").where(
        "operation = 'VACUUM END'"
    )
    assert vacuumed.first()["operationMetrics"]["numDeletedFiles"] != "0"

    with caplog.at_level(logging.WARNING, logger="adlake.gold"):
        build_gold(spark, inc)
    assert any("rebuilding in full" in r.getMessage() for r in caplog.records)

    for spec in (*EVENT_TABLES, SILVER_CREATIVES):
        shutil.copytree(spec.location(inc), full.table_path(spec.relative_path))
    build_gold(spark, full, full=True)
    _assert_tables_equal(spark, inc, full)


def test_stored_increment_scans_read_only_the_columns_attribution_uses(
    spark: SparkSession, tmp_path: Path
) -> None:
    """The impressions an increment stores are flagged by file and hold, and read, only the
    six columns touches need: a stored frame's unused columns cannot be pruned later."""
    cfg = config_for(tmp_path)
    _append(spark, cfg, {SILVER_IMPRESSIONS: _events(5, 0, 0, ["u1"], 2)[SILVER_IMPRESSIONS]})
    location = SILVER_IMPRESSIONS.location(cfg)
    first = deltalog.table_version(spark, location)
    _append(spark, cfg, {SILVER_IMPRESSIONS: _events(6, 0, 0, ["u2"], 1)[SILVER_IMPRESSIONS]})
    found = deltalog.appended_files(spark, location, first, first + 1)
    assert found is not None and len(found.files) == 1
    columns = inc.ATTRIBUTION_COLUMNS[SILVER_IMPRESSIONS.relative_path]
    flagged = inc.flag_appended(storage.read_table(spark, location), found.files, columns)
    assert flagged.columns == [*columns, "_appended"]
    assert sorted((r["user_id"], r["_appended"]) for r in flagged.collect()) == [
        ("u1", False),
        ("u1", False),
        ("u2", True),
    ]
    leaves = flagged._jdf.queryExecution().sparkPlan().collectLeaves()
    (scan,) = [leaves.apply(i) for i in range(leaves.size())]
    assert sorted(scan.requiredSchema().fieldNames()) == sorted(columns)
