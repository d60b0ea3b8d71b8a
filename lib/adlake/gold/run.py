"""Gold runs: silver tables -> attribution and campaign aggregates, full or incremental.

Each gold commit records the silver versions it read, the parameters and
`GOLD_LOGIC_VERSION`; unchanged inputs skip the table, appended silver rows update it
incrementally (`gold.incremental`). The rules are in docs/gold.md (Runs).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from typing import TYPE_CHECKING, Final

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from adlake import deltalog, storage
from adlake.gold import incremental as inc
from adlake.gold.aggregates import (
    bid_funnel_daily,
    bid_funnel_for_dates,
    campaign_attribution_daily,
    campaign_daily,
)
from adlake.gold.markov import (
    MARKOV_WEIGHTS_SCHEMA,
    channel_weights_of_columns,
    conversion_channels,
    markov_credits,
    markov_transition_counts,
)
from adlake.gold.models import attribute_conversions
from adlake.gold.touches import (
    UNATTRIBUTED,
    build_touches,
    build_touches_then_and_now,
    converting_touches,
    fill_campaign,
    then_and_now,
    utc_date,
)
from adlake.settings.gold import MARKOV
from adlake.tables import (
    GOLD_BID_FUNNEL_DAILY,
    GOLD_CAMPAIGN_ATTRIBUTION_DAILY,
    GOLD_CAMPAIGN_DAILY,
    GOLD_CONVERSION_ATTRIBUTION,
    GOLD_CONVERSION_CHANNELS,
    GOLD_MARKOV_TRANSITIONS,
    GOLD_STATE_TABLES,
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

# The version of what the gold transforms compute. Gold skips a rebuild when its inputs are
# unchanged, and this is one of them: bump it in any change that alters a gold table's rows
# for the same silver data and parameters, so the next run restates every gold table.
# 2: bid_funnel_daily counts a won auction in its winning bid request's group only.
GOLD_LOGIC_VERSION: Final = "2"


def build_gold(
    spark: SparkSession, cfg: AppConfig, tables: str = "all", full: bool = False
) -> dict[str, int]:
    """Bring gold tables (`attribution`, `aggregates` or `all`) up to date; rows per table.

    Keys of the result are the tables' relative paths (`TableSpec.relative_path`).
    Incremental when possible (docs/gold.md), from scratch with `full`. Silver is read at
    versions pinned up front, and those versions are what each gold commit records: a
    silver write landing during the build is picked up by the next run instead of being
    recorded as already seen.
    """
    pinned = {
        spec.relative_path: deltalog.table_version(spark, spec.location(cfg))
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
            {"inputs": versions, "params": params, "logic": GOLD_LOGIC_VERSION},
            sort_keys=True,
        )

    impressions, clicks = silver(SILVER_IMPRESSIONS), silver(SILVER_CLICKS)
    conversions, creatives = silver(SILVER_CONVERSIONS), silver(SILVER_CREATIVES)
    params = cfg.attribution
    silver_inputs = (SILVER_IMPRESSIONS, SILVER_CLICKS, SILVER_CONVERSIONS, SILVER_CREATIVES)

    def attribution(written: dict[str, int]) -> None:
        stamp = fingerprint(silver_inputs, repr(params))
        # The attribution rows this run writes (stored), for the by-day table below.
        rows: DataFrame | None = None
        if _unchanged(spark, cfg, GOLD_CONVERSION_ATTRIBUTION, stamp, written):
            log.info("gold attribution: silver unchanged since the last run, skipped")
        else:
            group = (GOLD_CONVERSION_ATTRIBUTION, *GOLD_STATE_TABLES)
            since = None if full else inc.built_from(spark, cfg, group, stamp, pinned)
            appended = None if since is None else inc.appended_since(spark, cfg, since, pinned)
            incremental = since is not None and appended is not None
            if since is not None and appended is not None:
                pairs = inc.pairs_of(spark, appended.files, clicks, creatives)
                # Impressions, clicks, conversions at the versions gold last read: read by
                # time travel only when OPTIMIZE moved rows since (otherwise they are the
                # current rows outside the appended files).
                before = (
                    tuple(silver(s, since[s.relative_path]) for s in inc.EVENT_SOURCES)
                    if appended.moved
                    else None
                )
                try:
                    rows = _attribution_incremental(
                        spark, cfg, stamp, pairs,
                        new=(impressions, clicks, conversions), old=before,
                        appended=appended.files, creatives=creatives, written=written,
                    )  # fmt: skip
                except Exception as exc:
                    if not inc.time_travel_gone(exc):
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
                touches = build_touches(impressions, clicks, creatives)
                rows = _attribution_full(spark, cfg, stamp, touches, conversions, written)
        # A function of the attribution table just written: same inputs, same stamp.
        by_day_stamp = json.dumps({"derived_from": stamp}, sort_keys=True)
        if not _unchanged(spark, cfg, GOLD_CAMPAIGN_ATTRIBUTION_DAILY, by_day_stamp, written):
            if rows is None:  # attribution was up to date: its table holds the rows
                rows = storage.read_table(spark, GOLD_CONVERSION_ATTRIBUTION.location(cfg))
            by_day = campaign_attribution_daily(rows)
            _replace(by_day, GOLD_CAMPAIGN_ATTRIBUTION_DAILY, cfg, by_day_stamp, written)

    def daily(written: dict[str, int]) -> None:
        stamp = fingerprint(silver_inputs)
        spec = GOLD_CAMPAIGN_DAILY
        if _unchanged(spark, cfg, spec, stamp, written):
            return
        since = None if full else inc.built_from(spark, cfg, (spec,), stamp, pinned)
        appended = None if since is None else inc.appended_since(spark, cfg, since, pinned)
        if since is None or appended is None:
            table = campaign_daily(impressions, clicks, conversions, creatives)
            _replace(table, spec, cfg, stamp, written)
            return
        dates = inc.dates_of(appended.files)

        def on(df: DataFrame) -> DataFrame:
            return df.where(inc.date_in("event_date", dates))

        table = campaign_daily(on(impressions), on(clicks), on(conversions), creatives)
        _replace_dates(table, spec, cfg, dates, stamp, written)

    def funnel(written: dict[str, int]) -> None:
        stamp = fingerprint((SILVER_BID_REQUESTS, SILVER_IMPRESSIONS))
        if _unchanged(spark, cfg, GOLD_BID_FUNNEL_DAILY, stamp, written):
            return
        bids = silver(SILVER_BID_REQUESTS)
        funnel_dates = None if full else inc.funnel_dates(spark, cfg, stamp, pinned, bids)
        if funnel_dates is None:
            table = bid_funnel_daily(bids, impressions)
            _replace(table, GOLD_BID_FUNNEL_DAILY, cfg, stamp, written)
        else:
            table = bid_funnel_for_dates(bids, impressions, funnel_dates)
            _replace_dates(table, GOLD_BID_FUNNEL_DAILY, cfg, funnel_dates, stamp, written)

    builds: list[Callable[[dict[str, int]], None]] = []
    if tables in ("attribution", "all"):
        builds.append(attribution)
    if tables in ("aggregates", "all"):
        builds += [daily, funnel]
    return _side_by_side(builds)


def _side_by_side(builds: Sequence[Callable[[dict[str, int]], None]]) -> dict[str, int]:
    """Run independent table builds in one thread each; their row counts in `builds` order.

    The builds write different tables and share only read-only inputs. A gold build is
    mostly small Spark jobs, Delta commits and driver work (the Markov solve), each leaving
    cores idle that another build's jobs then use. Every build runs to its end even when
    another fails; the first failure is raised after all have finished.
    """
    outputs: list[dict[str, int]] = [{} for _ in builds]
    with ThreadPoolExecutor(max(1, len(builds)), thread_name_prefix="adlake-gold") as pool:
        futures = [pool.submit(build, out) for build, out in zip(builds, outputs, strict=True)]
    for future in futures:
        future.result()
    return {table: rows for out in outputs for table, rows in out.items()}


# ---------------------------------------------------------------------------- attribution


def _attribution_full(
    spark: SparkSession,
    cfg: AppConfig,
    stamp: str,
    touches: DataFrame,
    conversions: DataFrame,
    written: dict[str, int],
) -> DataFrame:
    """Build attribution and its state tables from all touches; the attribution rows
    written, stored (the by-day table is computed from them without reading the table)."""
    params = cfg.attribution
    # The Markov paths read every touch once; credits and channels only the touches of
    # converting pairs, a small share, stored once for both (touches are a cheap scan).
    weights = _write_counts(
        spark, cfg, markov_transition_counts(touches, conversions, params), stamp
    )
    converting = converting_touches(touches, conversions).cache()
    credited = attribute_conversions(
        conversions, converting, params, markov_weights=weights
    ).withColumn("event_date", utc_date(F.col("conversion_ts")))
    channels = conversion_channels(conversions, converting, params)
    _replace(channels, GOLD_CONVERSION_CHANNELS, cfg, stamp, {})
    stored = credited.localCheckpoint()
    _replace(stored, GOLD_CONVERSION_ATTRIBUTION, cfg, stamp, written)
    converting.unpersist()
    return stored


def _attribution_incremental(
    spark: SparkSession,
    cfg: AppConfig,
    stamp: str,
    pairs: DataFrame,
    new: tuple[DataFrame, DataFrame, DataFrame],
    old: tuple[DataFrame, ...] | None,
    appended: dict[str, list[deltalog.AddedFile]],
    creatives: DataFrame,
    written: dict[str, int],
) -> DataFrame:
    """Recompute the (user, campaign) pairs the appended rows touch and restate everyone's
    markov credits (docs/gold.md); the attribution rows written, stored.

    Silver is read for the pairs' users only (a broadcast semi-join on user_id); touches are
    built from the pairs' clicks and impressions plus the impressions that serve those
    clicks their website (same user and creative, any campaign), and only the pairs'
    touches and conversions go on to the paths and models. `old` holds impressions, clicks
    and conversions at the versions gold last read; None when the commits since only
    appended files, and those rows are then the current ones outside `appended`, split
    from one stored read of the current version.
    """
    params = cfg.attribution
    # The pairs' users: silver is narrowed to them first (a cheap broadcast semi-join on one
    # column) before the campaign fill and the pair joins.
    users = pairs.select("user_id").distinct().cache()
    creatives = creatives.localCheckpoint()  # in every campaign fill below: one table read

    def pair_clicks(clicks: DataFrame) -> DataFrame:
        return inc.of_pairs(fill_campaign(inc.of_users(clicks, users), creatives), pairs)

    def serving(impressions: DataFrame, clicks: DataFrame) -> DataFrame:
        return inc.pair_or_served(
            fill_campaign(inc.of_users(impressions, users), creatives), pairs, clicks
        )

    if old is None:

        def scan(df: DataFrame, spec: TableSpec) -> DataFrame:
            files = appended.get(spec.relative_path, [])
            return inc.flag_appended(df, files, inc.ATTRIBUTION_COLUMNS[spec.relative_path])

        # Stored (local checkpoints): each is read by more than one join below.
        flagged_clicks = pair_clicks(scan(new[1], SILVER_CLICKS)).localCheckpoint()
        flagged_impressions = serving(
            scan(new[0], SILVER_IMPRESSIONS), flagged_clicks
        ).localCheckpoint()
        now_conversions, old_conversions = inc.split_appended(
            inc.of_pairs(scan(new[2], SILVER_CONVERSIONS), pairs)
        )
        # The touches then and now from one build: the rows not appended, with the website
        # their clicks had before the append, are the touches gold last read.
        cached = inc.of_pairs(
            build_touches_then_and_now(flagged_impressions, flagged_clicks, creatives), pairs
        ).cache()
        old_touches, touches = then_and_now(cached)
    else:
        now_clicks = pair_clicks(new[1])
        now_impressions = serving(new[0], now_clicks)
        now_conversions = inc.of_pairs(new[2], pairs)
        old_clicks = pair_clicks(old[1])
        old_impressions = serving(old[0], old_clicks)
        old_conversions = inc.of_pairs(old[2], pairs)
        touches = inc.of_pairs(build_touches(now_impressions, now_clicks, creatives), pairs)
        cached = touches.cache()
        old_touches = inc.of_pairs(build_touches(old_impressions, old_clicks, creatives), pairs)

    counts = inc.updated_counts(
        storage.read_table(spark, GOLD_MARKOV_TRANSITIONS.location(cfg)),
        added=markov_transition_counts(touches, now_conversions, params),
        removed=markov_transition_counts(old_touches, old_conversions, params),
    )
    weights = _write_counts(spark, cfg, counts, stamp)

    existing = storage.read_table(spark, GOLD_CONVERSION_ATTRIBUTION.location(cfg))
    kept = inc.of_pairs(existing, pairs, keep=False).where(
        (F.col("model") != MARKOV) | F.col("touch_type").eqNullSafe(F.lit(UNATTRIBUTED))
    )
    other_channels = inc.of_pairs(
        storage.read_table(spark, GOLD_CONVERSION_CHANNELS.location(cfg)), pairs, keep=False
    )
    fresh = attribute_conversions(
        now_conversions, touches, params, markov_weights=weights
    ).withColumn("event_date", utc_date(F.col("conversion_ts")))
    restated = (
        kept.unionByName(markov_credits(other_channels, weights, params.markov_channel))
        .unionByName(fresh)
        .localCheckpoint()  # the table is read above and replaced below
    )
    channels = other_channels.unionByName(
        conversion_channels(now_conversions, touches, params)
    ).localCheckpoint()
    _replace(channels, GOLD_CONVERSION_CHANNELS, cfg, stamp, {})
    _replace(restated, GOLD_CONVERSION_ATTRIBUTION, cfg, stamp, written)
    cached.unpersist()
    users.unpersist()
    pairs.unpersist()
    return restated


def _write_counts(spark: SparkSession, cfg: AppConfig, counts: DataFrame, stamp: str) -> DataFrame:
    """Store all paths' transition counts; returns the Markov weights they give.

    The counts are computed once (a local checkpoint, which also detaches them from the
    table they may be read from), written by Spark and collected for the driver's solve:
    building the table from the collected rows instead cost a multi-megabyte task for
    ~170k transitions at 1M impressions.
    """
    spec = GOLD_MARKOV_TRANSITIONS
    table = counts.select(
        *[F.col(f.name).cast(f.dataType) for f in spec.schema.fields]
    ).localCheckpoint()
    storage.overwrite_derived(table, spec.relative_path, spec.location(cfg), spec.partition_by,
                              stamp)  # fmt: skip
    # Collected as Arrow columns: a Python Row per transition cost ~1 s at 1M impressions.
    arrow = table.toArrow()
    rows = channel_weights_of_columns(
        *(arrow.column(name).to_pylist() for name in spec.schema.fieldNames())
    )
    log.info("markov weights: %d channels from %d distinct transitions", len(rows), arrow.num_rows)
    return spark.createDataFrame(rows, MARKOV_WEIGHTS_SCHEMA)


# ------------------------------------------------------------------------------- writing


def _rows(spark: SparkSession, location: str) -> int:
    """Rows of a gold table (one Spark job: Delta answers a count from the log's stats)."""
    return storage.read_table(spark, location).count()


def _unchanged(
    spark: SparkSession, cfg: AppConfig, spec: TableSpec, stamp: str, written: dict[str, int]
) -> bool:
    """True (and the row count noted) when the table was last built from exactly `stamp`."""
    location = spec.location(cfg)
    fingerprint, rows = deltalog.derived_commit(spark, location)
    if fingerprint != stamp:
        return False
    # A partition replace's commit counts the rows it wrote, not the table's.
    partial = deltalog.last_write_partial(spark, location)
    written[spec.relative_path] = _rows(spark, location) if partial else rows
    log.info("gold %s: inputs unchanged, kept (%d rows)", spec.name, written[spec.relative_path])
    return True


def _replace(
    df: DataFrame, spec: TableSpec, cfg: AppConfig, stamp: str, written: dict[str, int]
) -> None:
    """Replace the whole table with `df`, stamped."""
    location = spec.location(cfg)
    storage.overwrite_derived(df, spec.relative_path, location, spec.partition_by, stamp)
    written[spec.relative_path] = deltalog.derived_commit(df.sparkSession, location)[1]
    log.info("gold %s: %d rows", spec.name, written[spec.relative_path])


def _replace_dates(
    df: DataFrame,
    spec: TableSpec,
    cfg: AppConfig,
    dates: Sequence[date | None],
    stamp: str,
    written: dict[str, int],
) -> None:
    """Replace the table's event_date partitions `dates` with `df`, stamped."""
    location = spec.location(cfg)
    storage.replace_partitions(df, spec.relative_path, location, "event_date", dates, stamp)
    written[spec.relative_path] = _rows(df.sparkSession, location)
    log.info("gold %s: %d dates replaced", spec.name, len(dates))
