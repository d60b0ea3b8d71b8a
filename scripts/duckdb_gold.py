"""DuckDB baseline for the gold build: the same attribution and campaign_daily SQL on silver.

    # export silver to Parquet (Spark), run the DuckDB SQL (timed), check it equals gold
    .venv/bin/python scripts/duckdb_gold.py --lakehouse /tmp/adlake-bench/lakehouse \\
        --workdir /tmp/adlake-duckdb --compare

From another script (scripts/ is not a package):

    sys.path.insert(0, str(REPO / "scripts"))
    import duckdb_gold
    versions = duckdb_gold.export_silver(spark, lakehouse, parquet_dir)   # not timed
    result = duckdb_gold.run_duckdb(parquet_dir, cfg.attribution)         # result["seconds"]
    duckdb_gold.compare_with_gold(spark, lakehouse, result, silver_versions=versions)

The SQL restates `adlake.gold` (build_touches, attribute_conversions for the five
heuristic models, campaign_daily) row for row: the same eligibility join, touch order and
tie-breaks, credits, 'unattributed' rows and UTC dates. Markov is left out (its weights are
a numpy solve, not SQL). Event times cross over as BIGINT microseconds since the epoch
(Spark's `unix_micros`), so no time zone is involved on either side; outputs carry
TIMESTAMP WITH TIME ZONE and DATE columns that Spark reads as TIMESTAMP and DATE.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypedDict

import duckdb
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from adlake import deltalog, storage
from adlake.config import join_path
from adlake.settings import gold as models
from adlake.settings.gold import DEFAULT_PARAMS, AttributionParams
from adlake.tables import GOLD_CAMPAIGN_DAILY, GOLD_CONVERSION_ATTRIBUTION

log = logging.getLogger("duckdb_gold")

HEURISTIC_MODELS: tuple[str, ...] = (
    models.LAST_TOUCH,
    models.FIRST_TOUCH,
    models.LINEAR,
    models.TIME_DECAY,
    models.POSITION_BASED,
)
CREDIT_TOLERANCE = 1e-9

# The silver columns gold reads, per table, as Spark SQL expressions (no session needed at
# import); event_ts leaves Spark as epoch microseconds.
_EVENT_US = "unix_micros(event_ts) AS event_us"
SILVER_EXPORT: dict[str, tuple[str, ...]] = {
    "impressions": (
        "impression_id", _EVENT_US, "user_id", "campaign_id", "creative_id", "website", "cost",
    ),
    "clicks": ("event_id", _EVENT_US, "user_id", "campaign_id", "creative_id"),
    "conversions": (
        "event_id", _EVENT_US, "user_id", "campaign_id", "conversion_type", "revenue",
    ),
    "creatives": ("creative_id", "campaign_id", "advertiser_id"),
}  # fmt: skip


class DuckDBResult(TypedDict):
    """What `run_duckdb` returns: Parquet outputs, their row counts and the SQL's seconds."""

    attribution: Path
    campaign_daily: Path
    attribution_rows: int
    campaign_daily_rows: int
    seconds: float
    write_seconds: float


# --------------------------------------------------------------------------------- export


def export_silver(spark: SparkSession, lakehouse: str, out_dir: Path) -> dict[str, int | None]:
    """Write the silver columns gold reads to `<out_dir>/<table>/*.parquet` (replacing them).

    Returns the Delta version read per silver table (`silver/<table>` -> version), the same
    keys gold records in its commits, so a comparison can tell it saw the same data.
    """
    versions: dict[str, int | None] = {}
    for name, columns in SILVER_EXPORT.items():
        relative = f"silver/{name}"
        location = join_path(lakehouse, relative)
        version = deltalog.table_version(spark, location)
        reader = spark.read.format("delta")
        if version is not None:
            reader = reader.option("versionAsOf", version)
        reader.load(location).selectExpr(*columns).write.mode("overwrite").parquet(
            str(out_dir / name)
        )
        versions[relative] = version
    log.info("silver exported to %s at versions %s", out_dir, versions)
    return versions


# ------------------------------------------------------------------------------------ SQL

_DAY_US = 86_400_000_000
# Touch order of gold.touches.touch_order(): Spark sorts ASC with nulls first by default.
_TOUCH_ORDER = (
    "touch_us ASC NULLS FIRST, CASE WHEN touch_type = 'impression' THEN 0 ELSE 1 END ASC, "
    "touch_id ASC NULLS LAST, creative_id ASC NULLS LAST, website ASC NULLS LAST"
)


def _double(value: float) -> str:
    # A bare 0.4 is a DECIMAL literal in DuckDB: 1 - 0.4 - 0.4 would be 0.2, not Spark's
    # 0.19999999999999996.
    return f"CAST({float(value)!r} AS DOUBLE)"


def _setup_sql(parquet_dir: Path, params: AttributionParams) -> list[str]:
    """Views over the Parquet files, the parameter overrides and the UTC-date macro."""

    def parquet(name: str) -> str:
        glob = str(parquet_dir / name / "*.parquet").replace("'", "''")
        return f"CREATE VIEW {name} AS SELECT * FROM read_parquet('{glob}')"

    overrides = ", ".join(
        f"('{campaign.replace(chr(39), chr(39) * 2)}', {p.click_window_seconds}, "
        f"{p.view_window_seconds}, {p.half_life_seconds}, {_double(p.first_touch_weight)}, "
        f"{_double(p.last_touch_weight)})"
        for campaign, p in sorted(params.params_by_campaign.items())
    )
    return [
        *(parquet(name) for name in SILVER_EXPORT),
        "CREATE TABLE param_overrides (campaign_id VARCHAR, click_window_seconds BIGINT, "
        "view_window_seconds BIGINT, half_life_seconds BIGINT, first_weight DOUBLE, "
        "last_weight DOUBLE)",
        *([f"INSERT INTO param_overrides VALUES {overrides}"] if overrides else []),
        # gold.touches.utc_date: floor(micros / day) as a date, exact in integers.
        f"CREATE MACRO utc_date(us) AS DATE '1970-01-01' + CAST("
        f"(us - (((us % {_DAY_US}) + {_DAY_US}) % {_DAY_US})) // {_DAY_US} AS INTEGER)",
        "CREATE VIEW creative_campaign AS SELECT creative_id, min(campaign_id) AS campaign_id "
        "FROM creatives WHERE creative_id IS NOT NULL GROUP BY creative_id",
    ]


def _attribution_sql(params: AttributionParams) -> str:
    """gold.touches.build_touches + gold.models.attribute_conversions for HEURISTIC_MODELS."""
    first_w, last_w = _double(params.first_touch_weight), _double(params.last_touch_weight)
    models = ", ".join(f"('{m}')" for m in HEURISTIC_MODELS)
    return f"""
CREATE TABLE attribution AS
WITH raw_touches AS (
    SELECT impression_id AS touch_id, 'impression' AS touch_type, event_us AS touch_us,
           user_id, campaign_id, creative_id, website
    FROM impressions
    UNION ALL
    SELECT event_id, 'click', event_us, user_id, campaign_id, creative_id, NULL::VARCHAR
    FROM clicks
), filled AS (
    SELECT t.touch_id, t.touch_type, t.touch_us, t.user_id,
           coalesce(t.campaign_id, cc.campaign_id) AS campaign_id, t.creative_id, t.website
    FROM raw_touches t LEFT JOIN creative_campaign cc ON t.creative_id = cc.creative_id
), touches AS (
    -- A click's website: the latest impression website of its user and creative up to it.
    SELECT touch_id, touch_type, touch_us, user_id, campaign_id, creative_id,
           CASE WHEN touch_type = 'click' AND creative_id IS NOT NULL THEN
                    last_value(CASE WHEN touch_type = 'impression' THEN website END IGNORE NULLS)
                    OVER (PARTITION BY user_id, creative_id ORDER BY {_TOUCH_ORDER}
                          ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
                WHEN touch_type <> 'click' THEN website END AS website
    FROM filled
), conv AS (
    SELECT c.event_id AS conversion_id, c.event_us AS conversion_us, c.conversion_type,
           c.user_id, c.campaign_id, CAST(c.revenue AS DECIMAL(18, 6)) AS revenue,
           coalesce('id:' || c.event_id, 'h:' || md5(to_json(struct_pack(
               c.event_id, c.event_us, c.conversion_type, c.user_id, c.campaign_id, c.revenue
           )))) AS conv_key,
           coalesce(o.click_window_seconds, {params.click_window_seconds}) AS click_window_seconds,
           coalesce(o.view_window_seconds, {params.view_window_seconds}) AS view_window_seconds,
           coalesce(o.half_life_seconds, {params.half_life_seconds}) AS half_life_seconds,
           coalesce(o.first_weight, {first_w}) AS first_weight,
           coalesce(o.last_weight, {last_w}) AS last_weight
    FROM conversions c LEFT JOIN param_overrides o ON c.campaign_id = o.campaign_id
), joined AS (
    -- Eligible: same user and campaign, touch at or before the conversion and within the
    -- click or view window; all bounds inclusive, in microseconds.
    SELECT c.*, t.touch_id, t.touch_type, t.touch_us, t.creative_id, t.website
    FROM conv c LEFT JOIN touches t
      ON c.user_id = t.user_id AND c.campaign_id = t.campaign_id
     AND t.touch_us <= c.conversion_us
     AND t.touch_us >= c.conversion_us - 1000000 * CASE t.touch_type
             WHEN 'click' THEN c.click_window_seconds
             WHEN 'impression' THEN c.view_window_seconds END
), ranked AS (
    SELECT *, count(touch_type) OVER per_conv AS n,
           row_number() OVER (per_conv ORDER BY {_TOUCH_ORDER}) AS rn,
           max(touch_us) OVER per_conv AS latest_us
    FROM joined
    WINDOW per_conv AS (PARTITION BY user_id, campaign_id, conv_key)
), weighted AS (
    SELECT *, max(CASE WHEN touch_type = 'click' THEN rn END) OVER per_conv AS last_click_rn,
           sum(decay) OVER per_conv AS decay_sum
    FROM (
        SELECT *, pow(CAST(2.0 AS DOUBLE), CAST(touch_us - latest_us AS DOUBLE)
                      / (CAST(half_life_seconds AS DOUBLE) * 1000000)) AS decay
        FROM ranked
    )
    WINDOW per_conv AS (PARTITION BY user_id, campaign_id, conv_key)
), credited AS (
    SELECT w.*, m.model,
           CASE WHEN w.touch_type IS NULL THEN CAST(1.0 AS DOUBLE)
                WHEN m.model = 'last_touch' THEN CAST(CASE WHEN last_click_rn IS NOT NULL
                    THEN rn = last_click_rn ELSE rn = n END AS DOUBLE)
                WHEN m.model = 'first_touch' THEN CAST(rn = 1 AS DOUBLE)
                WHEN m.model = 'linear' THEN CAST(1.0 AS DOUBLE) / CAST(n AS DOUBLE)
                WHEN m.model = 'time_decay' THEN decay / nullif(decay_sum, 0)
                WHEN m.model = 'position_based' THEN CASE
                    WHEN n = 1 THEN CAST(1.0 AS DOUBLE)
                    WHEN n = 2 AND rn = 1 THEN first_weight / nullif(first_weight + last_weight, 0)
                    WHEN n = 2 THEN last_weight / nullif(first_weight + last_weight, 0)
                    WHEN rn = 1 THEN first_weight
                    WHEN rn = n THEN last_weight
                    ELSE greatest(CAST(0.0 AS DOUBLE), 1.0 - first_weight - last_weight)
                         / CAST(n - 2 AS DOUBLE) END
           END AS credit
    FROM weighted w CROSS JOIN (VALUES {models}) m(model)
)
SELECT conversion_id, make_timestamp(conversion_us)::TIMESTAMPTZ AS conversion_ts,
       conversion_type, user_id, campaign_id, revenue, model, touch_id,
       coalesce(touch_type, 'unattributed') AS touch_type,
       make_timestamp(touch_us)::TIMESTAMPTZ AS touch_ts, creative_id, website, credit,
       credit * CAST(revenue AS DOUBLE) AS attributed_revenue,
       click_window_seconds, view_window_seconds, half_life_seconds,
       utc_date(conversion_us) AS event_date
FROM credited
WHERE credit > 0
"""


_CAMPAIGN_DAILY_SQL = """
CREATE TABLE campaign_daily AS
WITH events AS (
    SELECT 'impression' AS kind, coalesce(i.campaign_id, cc.campaign_id) AS campaign_id,
           utc_date(i.event_us) AS event_date, i.user_id,
           CAST(i.cost AS DECIMAL(38, 6)) AS cost, NULL::DECIMAL(38, 6) AS revenue
    FROM impressions i LEFT JOIN creative_campaign cc ON i.creative_id = cc.creative_id
    UNION ALL
    SELECT 'click', campaign_id, utc_date(event_us), user_id, NULL, NULL FROM clicks
    UNION ALL
    SELECT 'conversion', campaign_id, utc_date(event_us), user_id, NULL,
           CAST(revenue AS DECIMAL(38, 6))
    FROM conversions
), daily AS (
    SELECT campaign_id, event_date,
           count(*) FILTER (WHERE kind = 'impression') AS impressions,
           count(*) FILTER (WHERE kind = 'click') AS clicks,
           count(*) FILTER (WHERE kind = 'conversion') AS conversions,
           CAST(coalesce(sum(revenue), 0) AS DECIMAL(38, 6)) AS revenue,
           CAST(coalesce(sum(cost), 0) AS DECIMAL(38, 6)) AS spend,
           count(DISTINCT user_id) AS unique_users
    FROM events GROUP BY campaign_id, event_date
), advertisers AS (
    SELECT campaign_id, min(advertiser_id) AS advertiser_id
    FROM creatives WHERE campaign_id IS NOT NULL GROUP BY campaign_id
)
SELECT d.campaign_id, a.advertiser_id, d.event_date, impressions, clicks, conversions,
       revenue, spend, unique_users,
       CAST(clicks AS DOUBLE) / nullif(CAST(impressions AS DOUBLE), 0) AS ctr,
       CAST(conversions AS DOUBLE) / nullif(CAST(clicks AS DOUBLE), 0) AS cvr,
       CAST(spend AS DOUBLE) * 1000 / nullif(CAST(impressions AS DOUBLE), 0) AS cpm,
       CAST(spend AS DOUBLE) / nullif(CAST(clicks AS DOUBLE), 0) AS cpc,
       CAST(spend AS DOUBLE) / nullif(CAST(conversions AS DOUBLE), 0) AS cpa,
       CAST(revenue AS DOUBLE) / nullif(CAST(spend AS DOUBLE), 0) AS roas
FROM daily d LEFT JOIN advertisers a ON d.campaign_id = a.campaign_id
"""


def run_duckdb(
    parquet_dir: Path,
    params: AttributionParams = DEFAULT_PARAMS,
    out_dir: Path | None = None,
    threads: int | None = None,
) -> DuckDBResult:
    """Attribution (five heuristic models) and campaign_daily over `export_silver` output.

    One in-memory connection. `seconds` times the two CREATE TABLE ... AS statements (reading
    the Parquet files and computing both tables); writing them to
    `<out_dir>/{attribution,campaign_daily}.parquet` (default out_dir: `<parquet_dir>/duckdb`)
    is timed separately as `write_seconds`. `threads` caps DuckDB's threads (default: cores).
    """
    target = out_dir if out_dir is not None else parquet_dir / "duckdb"
    target.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect()
    try:
        # Timestamps leave as TIMESTAMPTZ from UTC micros; a UTC session keeps that exact.
        con.execute("SET TimeZone = 'UTC'")
        if threads is not None:
            con.execute(f"SET threads = {int(threads)}")
        for statement in _setup_sql(parquet_dir, params):
            con.execute(statement)
        started = time.perf_counter()
        con.execute(_attribution_sql(params))
        con.execute(_CAMPAIGN_DAILY_SQL)
        seconds = time.perf_counter() - started
        rows: dict[str, int] = {}
        started = time.perf_counter()
        for table in ("attribution", "campaign_daily"):
            path = str(target / f"{table}.parquet").replace("'", "''")
            con.execute(f"COPY {table} TO '{path}' (FORMAT parquet)")
            counted = con.execute(f"SELECT count(*) FROM {table}").fetchone()
            rows[table] = int(counted[0]) if counted else 0
        write_seconds = time.perf_counter() - started
    finally:
        con.close()
    log.info("duckdb: %s rows in %.3f s (+%.3f s to write)", rows, seconds, write_seconds)
    return DuckDBResult(
        attribution=target / "attribution.parquet",
        campaign_daily=target / "campaign_daily.parquet",
        attribution_rows=rows["attribution"],
        campaign_daily_rows=rows["campaign_daily"],
        seconds=seconds,
        write_seconds=write_seconds,
    )


# ------------------------------------------------------------------------------ compare

_ATTRIBUTION_KEYS = ("conversion_id", "model", "touch_type", "touch_id")
_ATTRIBUTION_EXACT = (
    "conversion_ts", "conversion_type", "user_id", "campaign_id", "revenue", "touch_ts",
    "creative_id", "website", "click_window_seconds", "view_window_seconds",
    "half_life_seconds", "event_date",
)  # fmt: skip
_DAILY_KEYS = ("campaign_id", "event_date")
_DAILY_EXACT = (
    "advertiser_id", "impressions", "clicks", "conversions", "revenue", "spend", "unique_users",
)  # fmt: skip
_DAILY_RATIOS = ("ctr", "cvr", "cpm", "cpc", "cpa", "roas")


def _compare_table(
    name: str,
    gold: DataFrame,
    duck: DataFrame,
    keys: tuple[str, ...],
    exact: tuple[str, ...],
    approx: tuple[str, ...],
) -> dict[str, Any]:
    """Full outer join on `keys` (null-safe); `exact` columns equal (null-safe), `approx`
    doubles within CREDIT_TOLERANCE x max(1, |gold|). Raises AssertionError on any mismatch.
    """
    g = gold.select(
        *[F.col(c).alias(f"g_{c}") for c in (*keys, *exact, *approx)], F.lit(1).alias("_g")
    )
    d = duck.select(
        *[F.col(c).alias(f"d_{c}") for c in (*keys, *exact, *approx)], F.lit(1).alias("_d")
    )
    on = [F.col(f"g_{k}").eqNullSafe(F.col(f"d_{k}")) for k in keys]
    joined = g.join(d, on, "full_outer")
    both = F.col("_g").isNotNull() & F.col("_d").isNotNull()

    def diff(c: str) -> Column:
        return F.abs(F.col(f"g_{c}") - F.col(f"d_{c}"))

    def approx_bad(c: str) -> Column:
        one_null = F.col(f"g_{c}").isNull() != F.col(f"d_{c}").isNull()
        too_far = diff(c) > F.lit(CREDIT_TOLERANCE) * F.greatest(F.lit(1.0), F.abs(F.col(f"g_{c}")))
        return one_null | F.coalesce(too_far, F.lit(False))

    bad: dict[str, Column] = {c: ~F.col(f"g_{c}").eqNullSafe(F.col(f"d_{c}")) for c in exact}
    bad.update({c: approx_bad(c) for c in approx})
    any_bad = F.lit(False)
    for condition in bad.values():
        any_bad = any_bad | condition
    stats = joined.agg(
        F.count("_g").alias("gold_rows"),
        F.count("_d").alias("duckdb_rows"),
        F.count(F.when(both, 1)).alias("matched"),
        *[F.count(F.when(both & bad[c], 1)).alias(f"bad_{c}") for c in bad],
        *[F.max(F.when(both, diff(c))).alias(f"maxdiff_{c}") for c in approx],
    ).first()
    assert stats is not None
    result: dict[str, Any] = {
        "gold_rows": stats["gold_rows"],
        "duckdb_rows": stats["duckdb_rows"],
        "matched": stats["matched"],
        "max_abs_diff": {c: stats[f"maxdiff_{c}"] or 0.0 for c in approx},
    }
    mismatched = {c: stats[f"bad_{c}"] for c in bad if stats[f"bad_{c}"]}
    unmatched = stats["gold_rows"] != stats["matched"] or stats["duckdb_rows"] != stats["matched"]
    if mismatched or unmatched:
        sample = (
            joined.where(~both | any_bad)
            .orderBy(*[F.col(f"g_{k}").asc_nulls_first() for k in keys])
            .limit(5)
            .collect()
        )
        raise AssertionError(
            f"{name}: DuckDB differs from gold: gold {result['gold_rows']} rows, DuckDB "
            f"{result['duckdb_rows']}, matched on {keys} {result['matched']} (a key repeated on "
            f"both sides matches more than once); mismatching rows per column {mismatched}; "
            f"max abs diff {result['max_abs_diff']}; first rows: "
            + "; ".join(str(r.asDict()) for r in sample)
        )
    return result


def _check_inputs(spark: SparkSession, location: str, silver_versions: Mapping[str, Any]) -> None:
    """Gold's last commit at `location` must record the silver versions DuckDB read."""
    metadata, _rows = deltalog.derived_commit(spark, location)
    recorded = json.loads(metadata).get("inputs", {}) if metadata else {}
    differing = {k: (recorded.get(k), v) for k, v in silver_versions.items() if k in recorded
                 and recorded[k] != v}  # fmt: skip
    if not recorded or differing:
        raise AssertionError(
            f"{location} was built from other silver versions than DuckDB read "
            f"((gold, exported) per table: {differing or 'gold records none'}); rebuild gold "
            "or export silver again"
        )


def compare_with_gold(
    spark: SparkSession,
    lakehouse: str,
    duckdb_results: DuckDBResult,
    silver_versions: Mapping[str, int | None] | None = None,
) -> dict[str, Any]:
    """Check `run_duckdb` output equals gold/conversion_attribution (five heuristic models)
    and gold/campaign_daily; returns per table row counts and max abs differences.

    Attribution rows match on (conversion_id, model, touch_type, touch_id), null-safe
    (touch_type keeps an impression and a click with the same id apart); credit and
    attributed_revenue within 1e-9 (relative above 1), every other column exact.
    campaign_daily rows match on (campaign_id, event_date): counts and money exact, ratios
    within 1e-9. With `silver_versions` (from `export_silver`), gold must have been built
    from exactly those versions. Raises AssertionError naming the table on any difference.
    """
    attribution_path = join_path(lakehouse, GOLD_CONVERSION_ATTRIBUTION.relative_path)
    daily_path = join_path(lakehouse, GOLD_CAMPAIGN_DAILY.relative_path)
    if silver_versions is not None:
        for location in (attribution_path, daily_path):
            _check_inputs(spark, location, silver_versions)
    gold_attribution = storage.read_table(spark, attribution_path).where(
        F.col("model").isin(*HEURISTIC_MODELS)
    )
    return {
        "conversion_attribution": _compare_table(
            GOLD_CONVERSION_ATTRIBUTION.relative_path,
            gold_attribution,
            spark.read.parquet(str(duckdb_results["attribution"])),
            _ATTRIBUTION_KEYS,
            _ATTRIBUTION_EXACT,
            ("credit", "attributed_revenue"),
        ),
        "campaign_daily": _compare_table(
            GOLD_CAMPAIGN_DAILY.relative_path,
            storage.read_table(spark, daily_path),
            spark.read.parquet(str(duckdb_results["campaign_daily"])),
            _DAILY_KEYS,
            _DAILY_EXACT,
            _DAILY_RATIOS,
        ),
    }


# ----------------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    """Export silver, time the DuckDB SQL, optionally compare with gold; print JSON."""
    from adlake.cli import configure_logging
    from adlake.config import load_config
    from adlake.session import build_spark

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--lakehouse", required=True, help="lakehouse root holding silver/*")
    parser.add_argument("--workdir", type=Path, required=True, help="Parquet export + outputs")
    parser.add_argument("--config", default=None, help="YAML config (attribution parameters)")
    parser.add_argument("--threads", type=int, default=None, help="DuckDB threads")
    parser.add_argument("--compare", action="store_true", help="check equal to gold tables")
    args = parser.parse_args(argv)
    configure_logging("INFO")
    cfg = load_config(args.config)
    spark = build_spark(cfg)
    try:
        parquet_dir = args.workdir / "silver"
        started = time.monotonic()
        versions = export_silver(spark, args.lakehouse, parquet_dir)
        export_seconds = time.monotonic() - started
        result = run_duckdb(parquet_dir, cfg.attribution, args.workdir / "duckdb", args.threads)
        report: dict[str, Any] = {
            "silver_versions": versions,
            "export_seconds": round(export_seconds, 2),
            "duckdb_seconds": round(result["seconds"], 3),
            "duckdb_write_seconds": round(result["write_seconds"], 3),
            "rows": {
                "attribution": result["attribution_rows"],
                "campaign_daily": result["campaign_daily_rows"],
            },
        }
        if args.compare:
            report["compare"] = compare_with_gold(spark, args.lakehouse, result, versions)
    finally:
        spark.stop()
    print(json.dumps(report, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
