"""Incremental gold: what changed in silver since gold's last build.

The silver versions a gold table was built from (its commit's userMetadata), the files
appended since, the users and dates they touch, and the signed Markov counts that bring
`gold/markov_transitions` up to date. `gold.run.build_gold` decides with these whether
an increment is possible; the rules are in docs/gold.md (Runs).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from datetime import date
from typing import TYPE_CHECKING, Any

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import StringType, StructField, StructType

from adlake import deltalog
from adlake.tables import (
    GOLD_BID_FUNNEL_DAILY,
    SILVER_BID_REQUESTS,
    SILVER_CLICKS,
    SILVER_CONVERSIONS,
    SILVER_CREATIVES,
    SILVER_IMPRESSIONS,
    TableSpec,
)

if TYPE_CHECKING:
    from adlake.config import AppConfig

log = logging.getLogger(__name__)

# The silver tables attribution and campaign_daily follow by their appended rows.
EVENT_SOURCES = (SILVER_IMPRESSIONS, SILVER_CLICKS, SILVER_CONVERSIONS)
_FUNNEL_INPUTS = (SILVER_BID_REQUESTS, SILVER_IMPRESSIONS)
_USER_SCHEMA = StructType([StructField("user_id", StringType(), True)])
_AUCTION_SCHEMA = StructType([StructField("auction_id", StringType(), True)])
_COUNT_KEYS = ("from_kind", "from_channel", "to_kind", "to_channel")


def time_travel_gone(error: Exception) -> bool:
    """True when a read of an old table version failed because its files or log are gone."""
    text = str(error)
    return any(
        marker in text
        for marker in (
            "FileNotFoundException",
            "DELTA_FILE_NOT_FOUND",
            "VERSION_NOT_FOUND",
            "VersionNotFound",
            "FAILED_READ_FILE.FILE_NOT_EXIST",
            "PATH_NOT_FOUND",
        )
    )


def built_from(
    spark: SparkSession,
    cfg: AppConfig,
    group: tuple[TableSpec, ...],
    stamp: str,
    pinned: Mapping[str, int | None],
) -> dict[str, int] | None:
    """The silver versions the tables of `group` were all last built from, when an
    incremental run can start there: same stamp apart from newer event tables, same
    creatives. None: rebuild from scratch.
    """
    stamps = {deltalog.derived_commit(spark, spec.location(cfg))[0] for spec in group}
    if len(stamps) != 1 or None in stamps:
        return None
    built, wanted = json.loads(stamps.pop() or "{}"), json.loads(stamp)
    if built.get("params") != wanted["params"] or built.get("logic") != wanted["logic"]:
        return None
    inputs: dict[str, Any] = built.get("inputs") or {}
    creatives = SILVER_CREATIVES.relative_path
    if creatives not in inputs or inputs[creatives] != pinned[creatives]:
        return None
    since: dict[str, int] = {}
    for spec in EVENT_SOURCES:
        then, now = inputs.get(spec.relative_path), pinned[spec.relative_path]
        if then is None or now is None or then > now:
            return None
        since[spec.relative_path] = then
    return since


def appended_since(
    spark: SparkSession, cfg: AppConfig, since: Mapping[str, int], pinned: Mapping[str, int | None]
) -> dict[str, list[deltalog.AddedFile]] | None:
    """Files appended to each event table since `since`; None when any change was not an append."""
    appended: dict[str, list[deltalog.AddedFile]] = {}
    for spec in EVENT_SOURCES:
        upto = pinned[spec.relative_path]
        assert upto is not None
        files = deltalog.appended_files(spark, spec.location(cfg), since[spec.relative_path], upto)
        if files is None:
            log.info("gold: %s changed other than by appends, full rebuild", spec.name)
            return None
        if not deltalog.all_exist(spark, (f.path for f in files)):
            # Compacted by OPTIMIZE and then removed by VACUUM since gold's last build.
            log.warning("gold: files appended to %s since the last build were vacuumed; "
                        "rebuilding in full", spec.name)  # fmt: skip
            return None
        appended[spec.relative_path] = files
    return appended


def funnel_dates(
    spark: SparkSession,
    cfg: AppConfig,
    stamp: str,
    pinned: Mapping[str, int | None],
    bids: DataFrame,
) -> list[date] | None:
    """The bid funnel's event dates that rows appended since its last build can change.

    Those are the dates of appended bid requests, and every date holding a bid request of
    an auction an appended bid request or impression belongs to (a new bid can take the
    win from another date; a new impression counts at its auction's winning request).
    None: rebuild in full (first build, new parameters or logic, a change that was not an
    append, or an appended row without a date).
    """
    built_stamp = deltalog.derived_commit(spark, GOLD_BID_FUNNEL_DAILY.location(cfg))[0]
    if built_stamp is None:
        return None
    built, wanted = json.loads(built_stamp), json.loads(stamp)
    if built.get("logic") != wanted["logic"]:
        return None
    inputs: dict[str, Any] = built.get("inputs") or {}
    paths: list[str] = []
    dates: set[date] = set()
    for spec in _FUNNEL_INPUTS:
        then, now = inputs.get(spec.relative_path), pinned[spec.relative_path]
        if then is None or now is None or then > now:
            return None
        files = deltalog.appended_files(spark, spec.location(cfg), then, now)
        if files is None or not deltalog.all_exist(spark, (f.path for f in files)):
            return None
        for f in files:
            value = f.partition_values.get("event_date")
            if value is None:
                return None
            if spec is SILVER_BID_REQUESTS:
                dates.add(date.fromisoformat(value))
            paths.append(f.path)
    if paths:
        auctions = (
            spark.read.schema(_AUCTION_SCHEMA)
            .parquet(*paths)
            .where(F.col("auction_id").isNotNull())
        )
        related = bids.join(auctions.distinct(), "auction_id", "left_semi")
        for row in related.select("event_date").distinct().collect():
            if row[0] is None:
                return None
            dates.add(row[0])
    return sorted(dates)


def dates_of(appended: Mapping[str, list[deltalog.AddedFile]]) -> list[date | None]:
    """The event_date partitions (None: the null partition) holding appended rows."""
    values = {f.partition_values.get("event_date") for files in appended.values() for f in files}
    return sorted(
        {None if v is None else date.fromisoformat(v) for v in values},
        key=lambda d: (d is not None, d or date.min),
    )


def date_in(column: str, dates: Sequence[date | None]) -> Column:
    """`column` is one of `dates` (None: is null)."""
    chosen = [d for d in dates if d is not None]
    condition = F.col(column).isin(chosen) if chosen else F.lit(False)
    return condition | F.col(column).isNull() if None in dates else condition


def users_of(spark: SparkSession, appended: Mapping[str, list[deltalog.AddedFile]]) -> DataFrame:
    """Distinct user_id (null included) of the appended files, cached: a small set."""
    paths = [f.path for files in appended.values() for f in files]
    if not paths:
        return spark.createDataFrame([], _USER_SCHEMA)
    users = spark.read.schema(_USER_SCHEMA).parquet(*paths).distinct().cache()
    log.info("gold: %d appended files of %d users", len(paths), users.count())
    return users


def of_users(df: DataFrame, users: DataFrame, *, keep: bool = True) -> DataFrame:
    """Rows of `df` whose user_id (null-safe) is (keep) or is not in `users`."""
    other = users.select(F.col("user_id").alias("_inc_user"))
    return df.join(
        F.broadcast(other),
        F.col("user_id").eqNullSafe(F.col("_inc_user")),
        "left_semi" if keep else "left_anti",
    )


def updated_counts(stored: DataFrame, added: DataFrame, removed: DataFrame) -> DataFrame:
    """Markov transition counts `stored` + `added` - `removed` (integers), zeros dropped."""

    def signed(df: DataFrame, sign: int) -> DataFrame:
        return df.select(*_COUNT_KEYS, (F.col("transitions") * sign).alias("transitions"))

    return (
        signed(stored, 1)
        .unionByName(signed(added, 1))
        .unionByName(signed(removed, -1))
        .groupBy(*_COUNT_KEYS)
        .agg(F.sum("transitions").alias("transitions"))
        .where(F.col("transitions") != 0)
    )
