"""Gold runs: silver tables -> attribution and campaign aggregates for analysts.

Each gold commit records the versions of the silver tables it read, the attribution
parameters and `attribution.GOLD_LOGIC_VERSION` (the version of the transforms) in its
userMetadata; when those are unchanged the table is skipped, so running gold twice on the
same silver data with the same code writes nothing (not even a new table version).

Incremental runs. When gold was last built with the same parameters and logic and every
silver commit since then only appended rows (read from the commit files, see
`storage.appended_files`), gold is brought up to date from the appended rows; the result
equals a full rebuild on the same silver data (tests compare them table by table).
Otherwise, on the first run, with `full=True` (`--full`) or after a change of parameters,
logic or the creatives dimension, every table is recomputed from all of silver.

- campaign_daily: the UTC dates of the appended rows are recomputed from those silver
  partitions and replaced (Delta replaceWhere).
- Attribution: everything a conversion's credits depend on (its touches, the website of a
  click, the Markov paths of its user) belongs to one user_id, so the users of the
  appended impressions, clicks and conversions are recomputed from their silver rows and
  nobody else's rows are read. The global Markov chain is kept as data,
  `gold/markov_transitions` (transition counts of all paths): an increment subtracts those
  users' counts at the previous silver versions and adds them at the new ones, integers,
  so the weights are exactly those of a full rebuild. New weights change every markov
  credit, so the markov rows of the other users are restated from
  `gold/conversion_channels` (the distinct channels of each conversion) without their
  touches. conversion_attribution and campaign_attribution_daily hold a few rows per
  conversion and are rewritten whole.
- bid_funnel_daily is recomputed whole when bid requests or impressions changed.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import StringType, StructField, StructType

from adlake import attribution, storage, tables
from adlake.config import AppConfig
from adlake.settings import gold as models
from adlake.tables import (
    SILVER_BID_REQUESTS,
    SILVER_CLICKS,
    SILVER_CONVERSIONS,
    SILVER_CREATIVES,
    SILVER_IMPRESSIONS,
    TableSpec,
)

log = logging.getLogger(__name__)

# Relative paths of the gold tables (declared in adlake.tables).
CONVERSION_ATTRIBUTION = tables.GOLD_CONVERSION_ATTRIBUTION.relative_path
CAMPAIGN_DAILY = tables.GOLD_CAMPAIGN_DAILY.relative_path
CAMPAIGN_ATTRIBUTION_DAILY = tables.GOLD_CAMPAIGN_ATTRIBUTION_DAILY.relative_path
BID_FUNNEL_DAILY = tables.GOLD_BID_FUNNEL_DAILY.relative_path
GOLD_TABLES = tuple(spec.relative_path for spec in tables.GOLD_TABLES)
MARKOV_TRANSITIONS = tables.GOLD_MARKOV_TRANSITIONS.relative_path
CONVERSION_CHANNELS = tables.GOLD_CONVERSION_CHANNELS.relative_path
GOLD_STATE_TABLES = tuple(spec.relative_path for spec in tables.GOLD_STATE_TABLES)

_USER_SCHEMA = StructType([StructField("user_id", StringType(), True)])
_EVENT_SOURCES = (SILVER_IMPRESSIONS, SILVER_CLICKS, SILVER_CONVERSIONS)


def build_gold(
    spark: SparkSession, cfg: AppConfig, tables: str = "all", full: bool = False
) -> dict[str, int]:
    """Bring gold tables (`attribution`, `aggregates` or `all`) up to date; rows per table.

    Incremental when possible (module doc), from scratch with `full`. Silver is read at
    versions pinned up front, and those versions are what each gold commit records: a
    silver write landing during the build is picked up by the next run instead of being
    recorded as already seen.
    """
    pinned = {
        spec.relative_path: storage.table_version(spark, spec.location(cfg))
        for spec in (
            SILVER_IMPRESSIONS,
            SILVER_CLICKS,
            SILVER_CONVERSIONS,
            SILVER_CREATIVES,
            SILVER_BID_REQUESTS,
        )
    }

    def silver(spec: TableSpec, version: int | None = None) -> DataFrame:
        chosen = pinned[spec.relative_path] if version is None else version
        reader = spark.read.format("delta")
        if chosen is not None:
            reader = reader.option("versionAsOf", chosen)
        return reader.load(spec.location(cfg))

    def fingerprint(specs: tuple[TableSpec, ...], params: str = "") -> str:
        versions = {s.relative_path: pinned[s.relative_path] for s in specs}
        return json.dumps(
            {"inputs": versions, "params": params, "logic": attribution.GOLD_LOGIC_VERSION},
            sort_keys=True,
        )

    impressions, clicks = silver(SILVER_IMPRESSIONS), silver(SILVER_CLICKS)
    conversions, creatives = silver(SILVER_CONVERSIONS), silver(SILVER_CREATIVES)
    params = cfg.attribution
    written: dict[str, int] = {}
    silver_inputs = (SILVER_IMPRESSIONS, SILVER_CLICKS, SILVER_CONVERSIONS, SILVER_CREATIVES)
    if tables in ("attribution", "all"):
        stamp = fingerprint(silver_inputs, repr(params))
        if _unchanged(spark, cfg, CONVERSION_ATTRIBUTION, stamp, written):
            log.info("gold attribution: silver unchanged since the last run, skipped")
        else:
            group = (CONVERSION_ATTRIBUTION, *GOLD_STATE_TABLES)
            since = None if full else _built_from(spark, cfg, group, stamp, pinned)
            appended = None if since is None else _appended(spark, cfg, since, pinned)
            incremental = since is not None and appended is not None
            if since is not None and appended is not None:
                users = _users_of(spark, appended)
                old = {s.relative_path: silver(s, since[s.relative_path]) for s in _EVENT_SOURCES}
                try:
                    _attribution_incremental(
                        spark, cfg, stamp, users,
                        new=(impressions, clicks, conversions),
                        old=(old[SILVER_IMPRESSIONS.relative_path],
                             old[SILVER_CLICKS.relative_path],
                             old[SILVER_CONVERSIONS.relative_path]),
                        creatives=creatives, written=written,
                    )  # fmt: skip
                except Exception as exc:
                    if not _time_travel_gone(exc):
                        raise
                    # VACUUM removed files of the silver versions gold last read (after an
                    # OPTIMIZE): the old counts cannot be subtracted, so start over. A state
                    # table already replaced carries the new stamp, the others the old one,
                    # and the full rebuild below replaces all of them.
                    log.warning(
                        "gold attribution: silver at the recorded versions is no longer "
                        "readable (vacuumed); rebuilding in full"
                    )
                    incremental = False
            if not incremental:
                _attribution_full(
                    spark,
                    cfg,
                    stamp,
                    touches_of(impressions, clicks, creatives),
                    conversions,
                    written,
                )
        # A function of the attribution table just written: same inputs, same stamp.
        by_day_stamp = json.dumps({"derived_from": stamp}, sort_keys=True)
        if not _unchanged(spark, cfg, CAMPAIGN_ATTRIBUTION_DAILY, by_day_stamp, written):
            by_day = attribution.campaign_attribution_daily(
                storage.read_table(spark, cfg.table_path(CONVERSION_ATTRIBUTION))
            )
            _replace(by_day, CAMPAIGN_ATTRIBUTION_DAILY, cfg, by_day_stamp, written)
    if tables in ("aggregates", "all"):
        stamp = fingerprint(silver_inputs)
        if not _unchanged(spark, cfg, CAMPAIGN_DAILY, stamp, written):
            since = None if full else _built_from(spark, cfg, (CAMPAIGN_DAILY,), stamp, pinned)
            appended = None if since is None else _appended(spark, cfg, since, pinned)
            if since is None or appended is None:
                daily = attribution.campaign_daily(impressions, clicks, conversions, creatives)
                _replace(daily, CAMPAIGN_DAILY, cfg, stamp, written)
            else:
                dates = _dates_of(appended)

                def on(df: DataFrame) -> DataFrame:
                    return df.where(_date_in("event_date", dates))

                daily = attribution.campaign_daily(
                    on(impressions), on(clicks), on(conversions), creatives
                )
                location = cfg.table_path(CAMPAIGN_DAILY)
                storage.replace_partitions(daily, CAMPAIGN_DAILY, location, "event_date",
                                           dates, stamp)  # fmt: skip
                written[CAMPAIGN_DAILY] = _rows(spark, location)
                log.info("gold %s: %d dates replaced", CAMPAIGN_DAILY, len(dates))
        stamp = fingerprint((SILVER_BID_REQUESTS, SILVER_IMPRESSIONS))
        if not _unchanged(spark, cfg, BID_FUNNEL_DAILY, stamp, written):
            bids = silver(SILVER_BID_REQUESTS)
            funnel_dates = None if full else _funnel_dates(spark, cfg, stamp, pinned, bids)
            if funnel_dates is None:
                funnel = attribution.bid_funnel_daily(bids, impressions)
                _replace(funnel, BID_FUNNEL_DAILY, cfg, stamp, written)
            else:
                funnel = attribution.bid_funnel_for_dates(bids, impressions, funnel_dates)
                location = cfg.table_path(BID_FUNNEL_DAILY)
                storage.replace_partitions(funnel, BID_FUNNEL_DAILY, location, "event_date",
                                           funnel_dates, stamp)  # fmt: skip
                written[BID_FUNNEL_DAILY] = _rows(spark, location)
                log.info("gold %s: %d dates replaced", BID_FUNNEL_DAILY, len(funnel_dates))
    return written


def _time_travel_gone(error: Exception) -> bool:
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


def touches_of(impressions: DataFrame, clicks: DataFrame, creatives: DataFrame) -> DataFrame:
    """`attribution.build_touches` (a name to keep build_gold's lines short)."""
    return attribution.build_touches(impressions, clicks, creatives)


# ---------------------------------------------------------------------------- incremental


def _built_from(
    spark: SparkSession,
    cfg: AppConfig,
    group: tuple[str, ...],
    stamp: str,
    pinned: Mapping[str, int | None],
) -> dict[str, int] | None:
    """The silver versions the tables of `group` were all last built from, when an
    incremental run can start there: same stamp apart from newer event tables, same
    creatives. None: rebuild from scratch.
    """
    stamps = {storage.derived_commit(spark, cfg.table_path(t))[0] for t in group}
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
    for spec in _EVENT_SOURCES:
        then, now = inputs.get(spec.relative_path), pinned[spec.relative_path]
        if then is None or now is None or then > now:
            return None
        since[spec.relative_path] = then
    return since


def _appended(
    spark: SparkSession, cfg: AppConfig, since: Mapping[str, int], pinned: Mapping[str, int | None]
) -> dict[str, list[storage.AddedFile]] | None:
    """Files appended to each event table since `since`; None when any change was not an append."""
    appended: dict[str, list[storage.AddedFile]] = {}
    for spec in _EVENT_SOURCES:
        upto = pinned[spec.relative_path]
        assert upto is not None
        files = storage.appended_files(spark, spec.location(cfg), since[spec.relative_path], upto)
        if files is None:
            log.info("gold: %s changed other than by appends, full rebuild", spec.name)
            return None
        if not storage.all_exist(spark, (f.path for f in files)):
            # Compacted by OPTIMIZE and then removed by VACUUM since gold's last build.
            log.warning("gold: files appended to %s since the last build were vacuumed; "
                        "rebuilding in full", spec.name)  # fmt: skip
            return None
        appended[spec.relative_path] = files
    return appended


_FUNNEL_INPUTS = (SILVER_BID_REQUESTS, SILVER_IMPRESSIONS)
_AUCTION_SCHEMA = StructType([StructField("auction_id", StringType(), True)])


def _funnel_dates(
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
    built_stamp = storage.derived_commit(spark, cfg.table_path(BID_FUNNEL_DAILY))[0]
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
        files = storage.appended_files(spark, spec.location(cfg), then, now)
        if files is None or not storage.all_exist(spark, (f.path for f in files)):
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


def _dates_of(appended: Mapping[str, list[storage.AddedFile]]) -> list[date | None]:
    """The event_date partitions (None: the null partition) holding appended rows."""
    values = {f.partition_values.get("event_date") for files in appended.values() for f in files}
    return sorted(
        {None if v is None else date.fromisoformat(v) for v in values},
        key=lambda d: (d is not None, d or date.min),
    )


def _date_in(column: str, dates: Sequence[date | None]) -> Any:
    chosen = [d for d in dates if d is not None]
    condition = F.col(column).isin(chosen) if chosen else F.lit(False)
    return condition | F.col(column).isNull() if None in dates else condition


def _users_of(spark: SparkSession, appended: Mapping[str, list[storage.AddedFile]]) -> DataFrame:
    """Distinct user_id (null included) of the appended files, cached: a small set."""
    paths = [f.path for files in appended.values() for f in files]
    if not paths:
        return spark.createDataFrame([], _USER_SCHEMA)
    users = spark.read.schema(_USER_SCHEMA).parquet(*paths).distinct().cache()
    log.info("gold: %d appended files of %d users", len(paths), users.count())
    return users


def _of_users(df: DataFrame, users: DataFrame, *, keep: bool = True) -> DataFrame:
    """Rows of `df` whose user_id (null-safe) is (keep) or is not in `users`."""
    other = users.select(F.col("user_id").alias("_inc_user"))
    return df.join(
        F.broadcast(other),
        F.col("user_id").eqNullSafe(F.col("_inc_user")),
        "left_semi" if keep else "left_anti",
    )


_COUNT_KEYS = ("from_kind", "from_channel", "to_kind", "to_channel")


def _attribution_full(
    spark: SparkSession,
    cfg: AppConfig,
    stamp: str,
    touches: DataFrame,
    conversions: DataFrame,
    written: dict[str, int],
) -> None:
    params = cfg.attribution
    touches = touches.cache()  # read three times: counts, credits, channels
    counts = attribution.markov_transition_counts(touches, conversions, params).collect()
    weights = _write_counts(spark, cfg, [tuple(r) for r in counts], stamp)
    credited = attribution.attribute_conversions(
        conversions, touches, params, markov_weights=weights
    ).withColumn("event_date", attribution.utc_date(F.col("conversion_ts")))
    channels = attribution.conversion_channels(conversions, touches, params)
    _replace(channels, CONVERSION_CHANNELS, cfg, stamp, {})
    _replace(credited, CONVERSION_ATTRIBUTION, cfg, stamp, written)
    touches.unpersist()


def _attribution_incremental(
    spark: SparkSession,
    cfg: AppConfig,
    stamp: str,
    users: DataFrame,
    new: tuple[DataFrame, DataFrame, DataFrame],
    old: tuple[DataFrame, DataFrame, DataFrame],
    creatives: DataFrame,
    written: dict[str, int],
) -> None:
    """Recompute the appended rows' users and restate everyone's markov credits (module doc)."""
    params = cfg.attribution
    impressions, clicks, conversions = (_of_users(df, users) for df in new)
    touches = attribution.build_touches(impressions, clicks, creatives).cache()
    old_touches = attribution.build_touches(
        _of_users(old[0], users), _of_users(old[1], users), creatives
    )
    old_conversions = _of_users(old[2], users)

    def signed(df: DataFrame, sign: int) -> DataFrame:
        return df.select(*_COUNT_KEYS, (F.col("transitions") * sign).alias("transitions"))

    stored = storage.read_table(spark, cfg.table_path(MARKOV_TRANSITIONS))
    counts = (
        signed(stored, 1)
        .unionByName(signed(attribution.markov_transition_counts(touches, conversions, params), 1))
        .unionByName(
            signed(attribution.markov_transition_counts(old_touches, old_conversions, params), -1)
        )
        .groupBy(*_COUNT_KEYS)
        .agg(F.sum("transitions").alias("transitions"))
        .where(F.col("transitions") != 0)
        .collect()
    )
    weights = _write_counts(spark, cfg, [tuple(r) for r in counts], stamp)

    channel = params.markov_channel
    existing = storage.read_table(spark, cfg.table_path(CONVERSION_ATTRIBUTION))
    kept = _of_users(existing, users, keep=False).where(
        (F.col("model") != models.MARKOV)
        | F.col("touch_type").eqNullSafe(F.lit(attribution.UNATTRIBUTED))
    )
    other_channels = _of_users(
        storage.read_table(spark, cfg.table_path(CONVERSION_CHANNELS)), users, keep=False
    )
    fresh = attribution.attribute_conversions(
        conversions, touches, params, markov_weights=weights
    ).withColumn("event_date", attribution.utc_date(F.col("conversion_ts")))
    restated = (
        kept.unionByName(attribution.markov_credits(other_channels, weights, channel))
        .unionByName(fresh)
        .localCheckpoint()  # the table is read above and replaced below
    )
    channels = other_channels.unionByName(
        attribution.conversion_channels(conversions, touches, params)
    ).localCheckpoint()
    _replace(channels, CONVERSION_CHANNELS, cfg, stamp, {})
    _replace(restated, CONVERSION_ATTRIBUTION, cfg, stamp, written)
    touches.unpersist()
    users.unpersist()


def _write_counts(
    spark: SparkSession, cfg: AppConfig, counts: list[tuple[Any, ...]], stamp: str
) -> DataFrame:
    """Store all paths' transition counts; returns the Markov weights they give."""
    table = spark.createDataFrame(counts, attribution.MARKOV_TRANSITIONS_SCHEMA)
    storage.overwrite_derived(table, MARKOV_TRANSITIONS, cfg.table_path(MARKOV_TRANSITIONS),
                              (), stamp)  # fmt: skip
    rows = attribution.channel_weights(counts)
    log.info("markov weights: %d channels from %d distinct transitions", len(rows), len(counts))
    return spark.createDataFrame(rows, attribution.MARKOV_WEIGHTS_SCHEMA)


# ------------------------------------------------------------------------------- writing


def _rows(spark: SparkSession, location: str) -> int:
    """Rows of a gold table (one Spark job: Delta answers a count from the log's stats)."""
    return storage.read_table(spark, location).count()


def _unchanged(
    spark: SparkSession, cfg: AppConfig, relative: str, stamp: str, written: dict[str, int]
) -> bool:
    """True (and the row count noted) when the table was last built from exactly `stamp`."""
    location = cfg.table_path(relative)
    fingerprint, rows = storage.derived_commit(spark, location)
    if fingerprint != stamp:
        return False
    # A partition replace's commit counts the rows it wrote, not the table's.
    partial = storage.last_write_partial(spark, location)
    written[relative] = _rows(spark, location) if partial else rows
    log.info("gold %s: inputs unchanged, kept (%d rows)", relative, written[relative])
    return True


def _replace(
    df: DataFrame, relative: str, cfg: AppConfig, stamp: str, written: dict[str, int]
) -> None:
    location = cfg.table_path(relative)
    storage.overwrite_derived(df, relative, location, ("event_date",), stamp)
    written[relative] = storage.derived_commit(df.sparkSession, location)[1]
    log.info("gold %s: %d rows", relative, written[relative])


def top_campaigns_by_roas(
    spark: SparkSession, cfg: AppConfig, limit: int = 5
) -> list[dict[str, object]]:
    """Campaigns with the best ROAS, with last-touch and linear attributed conversions."""
    daily = storage.read_table(spark, cfg.table_path(CAMPAIGN_DAILY))
    totals = daily.groupBy("campaign_id").agg(
        F.sum("spend").alias("spend"),
        F.sum("revenue").alias("revenue"),
        F.sum("conversions").alias("conversions"),
    )
    attributed = (
        storage.read_table(spark, cfg.table_path(CAMPAIGN_ATTRIBUTION_DAILY))
        .where(F.col("model").isin(models.LAST_TOUCH, models.LINEAR))
        .groupBy("campaign_id")
        .pivot("model", [models.LAST_TOUCH, models.LINEAR])
        .agg(F.sum("attributed_conversions"))
    )
    rows = (
        totals.join(attributed, "campaign_id", "left")
        .withColumn(
            "roas", F.try_divide(F.col("revenue").cast("double"), F.col("spend").cast("double"))
        )
        .orderBy(F.col("roas").desc_nulls_last(), "campaign_id")
        .limit(limit)
        .collect()
    )
    return [r.asDict() for r in rows]


def format_money(amount: object) -> str:
    """Currency for people: 2 decimals rounded half-up, thousands separated; '-' when null.

    Only printed summaries round: the tables keep DECIMAL(18, 6) (or (38, 6) for sums).
    """
    if amount is None:
        return "-"
    cents = Decimal(str(amount)).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    return f"{cents:,}"


def format_top_campaigns(rows: Sequence[Mapping[str, Any]]) -> str:
    """One line per row of `top_campaigns_by_roas`, for the terminal."""
    if not rows:
        return "  (no campaigns yet)"
    lines = []
    for row in rows:
        roas = "-" if row["roas"] is None else f"{row['roas']:.2f}"
        lines.append(
            f"  campaign {row['campaign_id']!s:>6}  roas {roas:>7}"
            f"  spend {format_money(row['spend']):>12}"
            f"  revenue {format_money(row['revenue']):>12}"
            f"  last_touch {row['last_touch'] or 0:8.2f}  linear {row['linear'] or 0:8.2f}"
        )
    return "\n".join(lines)
