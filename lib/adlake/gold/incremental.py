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
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING, Any

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import StringType, StructField, StructType

from adlake import deltalog
from adlake.gold.touches import (
    APPENDED,
    CLICK_INPUT,
    CONVERSION_INPUT,
    IMPRESSION_INPUT,
    fill_campaign,
)
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


@dataclass(frozen=True)
class Appended:
    """Files appended to each event table since gold's last build (by relative path), and
    whether OPTIMIZE moved rows of any of them into other files since (`deltalog.Appends`)."""

    files: dict[str, list[deltalog.AddedFile]]
    moved: bool


def appended_since(
    spark: SparkSession, cfg: AppConfig, since: Mapping[str, int], pinned: Mapping[str, int | None]
) -> Appended | None:
    """Files appended to each event table since `since`; None when any change was not an append."""
    files: dict[str, list[deltalog.AddedFile]] = {}
    moved = False
    for spec in EVENT_SOURCES:
        upto = pinned[spec.relative_path]
        assert upto is not None
        found = deltalog.appended_files(spark, spec.location(cfg), since[spec.relative_path], upto)
        if found is None:
            log.info("gold: %s changed other than by appends, full rebuild", spec.name)
            return None
        if not deltalog.all_exist(spark, (f.path for f in found.files)):
            # Compacted by OPTIMIZE and then removed by VACUUM since gold's last build.
            log.warning("gold: files appended to %s since the last build were vacuumed; "
                        "rebuilding in full", spec.name)  # fmt: skip
            return None
        files[spec.relative_path] = found.files
        moved = moved or found.moved
    return Appended(files, moved)


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
        found = deltalog.appended_files(spark, spec.location(cfg), then, now)
        if found is None or not deltalog.all_exist(spark, (f.path for f in found.files)):
            return None
        for f in found.files:
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


# The columns of each event table that attribution reads: what an increment's stored scans
# keep (`flag_appended`).
ATTRIBUTION_COLUMNS: Mapping[str, tuple[str, ...]] = {
    SILVER_IMPRESSIONS.relative_path: IMPRESSION_INPUT,
    SILVER_CLICKS.relative_path: CLICK_INPUT,
    SILVER_CONVERSIONS.relative_path: CONVERSION_INPUT,
}


def flag_appended(
    df: DataFrame, files: Sequence[deltalog.AddedFile], columns: Sequence[str]
) -> DataFrame:
    """`columns` of a Delta table's scan `df`, with `APPENDED` (the flag
    `touches.build_touches_then_and_now` reads): the row is in one of `files`.

    Matched on the file name (`_metadata.file_name`): Delta names data files with a UUID,
    and the name has none of the path's scheme or escaping to normalise. Only `columns` are
    kept because the frame is stored (`split_appended`, or a local checkpoint of the
    flagged rows in `run._attribution_incremental`): Spark cannot prune a stored frame's
    columns by what later reads use, so the scan would read, and the store hold, every
    column of the table (at 10M impressions: all 19 columns of 12M rows for 6).
    """
    names = sorted({f.path.rsplit("/", 1)[-1] for f in files})
    flag = F.col("_metadata.file_name").isin(names) if names else F.lit(False)
    return df.select(*columns, flag.alias(APPENDED))


def split_appended(df: DataFrame) -> tuple[DataFrame, DataFrame]:
    """(all rows, rows not appended) of a `flag_appended` frame, stored once.

    When the commits since gold's last build only appended files, the rows outside those
    files are the rows of the version gold last read: both sides come from one read of
    the current version instead of a second, time-travel read (its snapshot costs a
    state reconstruction). Stored (a local checkpoint) because both sides are read by
    several joins.
    """
    stored = df.localCheckpoint()
    return (
        stored.drop(APPENDED),
        stored.where(~F.col(APPENDED)).drop(APPENDED),
    )


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


_PAIR_SCHEMA = StructType(
    [StructField(name, StringType(), True) for name in ("user_id", "campaign_id", "creative_id")]
)


def pairs_of(
    spark: SparkSession,
    appended: Mapping[str, list[deltalog.AddedFile]],
    clicks: DataFrame,
    creatives: DataFrame,
) -> DataFrame:
    """Distinct (user_id, campaign_id) whose attribution the appended rows can change, cached.

    Conversions are eligible only for touches of their own user and campaign, and Markov
    paths are per conversion or per (user, campaign), so a pair's credits and paths depend
    on its own rows only, with one exception: a click's website is that of the latest
    impression of its user and creative, whatever that impression's campaign. The pairs are
    those of the appended impressions and clicks (campaign filled from the creative, as
    touches have it) and conversions, plus those of every click (in `clicks`, the current
    silver version) sharing user and creative with an appended impression. Null user or
    campaign is a value of its own here, as in the paths.
    """

    def appended_rows(spec: TableSpec) -> DataFrame:
        paths = [f.path for f in appended.get(spec.relative_path, [])]
        if not paths:
            return spark.createDataFrame([], _PAIR_SCHEMA)
        return spark.read.schema(_PAIR_SCHEMA).parquet(*paths)

    new_impressions = appended_rows(SILVER_IMPRESSIONS)
    served = (
        new_impressions.where(F.col("creative_id").isNotNull())
        .select(F.col("user_id").alias("_s_user"), F.col("creative_id").alias("_s_creative"))
        .distinct()
    )
    clicks_served = clicks.select(*_PAIR_SCHEMA.fieldNames()).join(
        F.broadcast(served),
        F.col("user_id").eqNullSafe(F.col("_s_user"))
        & (F.col("creative_id") == F.col("_s_creative")),
        "left_semi",
    )
    touched = fill_campaign(
        new_impressions.unionByName(appended_rows(SILVER_CLICKS)).unionByName(clicks_served),
        creatives,
    )
    pairs = (
        touched.select("user_id", "campaign_id")
        .unionByName(appended_rows(SILVER_CONVERSIONS).select("user_id", "campaign_id"))
        .distinct()
        .cache()
    )
    log.info("gold: recomputing the (user, campaign) pairs of %d appended files",
             sum(len(files) for files in appended.values()))  # fmt: skip
    return pairs


def of_pairs(df: DataFrame, pairs: DataFrame, *, keep: bool = True) -> DataFrame:
    """Rows of `df` whose (user_id, campaign_id) (null-safe) is (keep) or is not in `pairs`."""
    other = pairs.select(
        F.col("user_id").alias("_inc_user"), F.col("campaign_id").alias("_inc_campaign")
    )
    return df.join(
        F.broadcast(other),
        F.col("user_id").eqNullSafe(F.col("_inc_user"))
        & F.col("campaign_id").eqNullSafe(F.col("_inc_campaign")),
        "left_semi" if keep else "left_anti",
    )


def pair_or_served(impressions: DataFrame, pairs: DataFrame, clicks: DataFrame) -> DataFrame:
    """Impressions (campaign filled) of a pair in `pairs`, or of the user and creative of a
    click in `clicks`: all that touches of those pairs need (a click's website comes from
    the latest impression of its user and creative, whatever that impression's campaign)."""
    in_pairs = pairs.select(
        F.col("user_id").alias("_p_user"),
        F.col("campaign_id").alias("_p_campaign"),
        F.lit(True).alias("_pair"),
    )
    serving = (
        clicks.where(F.col("creative_id").isNotNull())
        .select(
            F.col("user_id").alias("_c_user"),
            F.col("creative_id").alias("_c_creative"),
            F.lit(True).alias("_served"),
        )
        .distinct()
    )
    c = F.col
    return (
        impressions.join(
            F.broadcast(in_pairs),
            c("user_id").eqNullSafe(c("_p_user")) & c("campaign_id").eqNullSafe(c("_p_campaign")),
            "left",
        )
        .join(
            F.broadcast(serving),
            c("user_id").eqNullSafe(c("_c_user")) & (c("creative_id") == c("_c_creative")),
            "left",
        )
        .where(c("_pair").isNotNull() | c("_served").isNotNull())
        .select(*impressions.columns)
    )


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
