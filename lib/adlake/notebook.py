"""What the analyst notebooks stand on: one call opens the lakehouse, every table is a SQL view,
and the frames behind the charts are built here so the notebooks hold only the analysis.

    from adlake.notebook import open_lakehouse
    lake = open_lakehouse()                      # $ADLAKE_CONFIG, else conf/local.yaml
    lake.sql("SELECT * FROM gold_campaign_daily WHERE event_date >= '2026-11-01'")

A config path and the relative paths inside it resolve against the repository root (where
`make demo` writes `./lakehouse`), not the notebook's folder, which is a Jupyter kernel's
working directory.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from pyspark import SparkContext
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql.types import DecimalType

from adlake import deltalog, storage
from adlake.config import DEFAULT_CONFIG, AppConfig, ConfigError, parse_config
from adlake.gold.touches import UNATTRIBUTED
from adlake.session import build_spark
from adlake.tables import ALL_TABLES, GOLD_STATE_TABLES

if TYPE_CHECKING:
    import pandas as pd

CONFIG_ENV = "ADLAKE_CONFIG"
# Delta's SQL parser drops `:name` parameter markers on Spark 4.1+ (delta-io/delta#7640:
# UNBOUND_SQL_PARAMETER); the legacy substitution binds them during analysis instead, for
# markers in the places a constant may stand, which is where a notebook puts them.
_BIND_PARAMETERS = {"spark.sql.legacy.parameterSubstitution.constantsOnly": "true"}
REPO_ROOT = DEFAULT_CONFIG.parents[1]
UNKNOWN_COUNTRY = "unknown"


def view_name(relative_path: str) -> str:
    """The SQL view of a table: `gold/campaign_daily` -> `gold_campaign_daily`."""
    return relative_path.replace("/", "_")


def notebook_config(path: str | Path | None = None) -> AppConfig:
    """The config at `path`, else $ADLAKE_CONFIG, else conf/local.yaml (see module doc)."""
    chosen = Path(path or os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG)
    if not chosen.is_absolute():
        chosen = REPO_ROOT / chosen
    try:
        data = yaml.safe_load(chosen.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(CONFIG_ENV, f"cannot read {chosen}: {exc}") from exc
    return parse_config(data, REPO_ROOT)


@dataclass(frozen=True)
class Lakehouse:
    """An open lakehouse: the session, the config and one temp view per existing table."""

    spark: SparkSession
    cfg: AppConfig
    views: tuple[str, ...]

    def path(self, relative_path: str) -> str:
        """Location of a table, for `delta.\\`<path>\\`` SQL or other Delta readers."""
        return self.cfg.table_path(relative_path)

    def table(self, relative_path: str) -> DataFrame:
        """The table at its latest version, e.g. `lake.table("gold/campaign_daily")`."""
        return storage.read_table(self.spark, self.path(relative_path))

    def sql(self, query: str, **params: Any) -> DataFrame:
        """Spark SQL over the views; `:name` markers take `params` (no string formatting)."""
        return self.spark.sql(query, args=params or None)


def table_catalog(cfg: AppConfig) -> list[dict[str, str]]:
    """Every table AdLake writes: view name, path under the lakehouse, partitioning, purpose."""
    rows = [
        {
            "view": view_name(spec.relative_path),
            "path": spec.relative_path,
            "partitioned_by": ", ".join(spec.partition_by),
            "description": spec.description,
        }
        for spec in ALL_TABLES
        if spec not in GOLD_STATE_TABLES  # internal state of incremental gold
    ]
    return rows


def register_views(spark: SparkSession, cfg: AppConfig) -> tuple[str, ...]:
    """A temp view per existing table (see `table_catalog`); returns the view names."""
    views = []
    for row in table_catalog(cfg):
        location = cfg.table_path(row["path"])
        if deltalog.is_table(spark, location):
            storage.read_table(spark, location).createOrReplaceTempView(row["view"])
            views.append(row["view"])
    return tuple(views)


@contextmanager
def _process_output_to(path: Path) -> Iterator[None]:
    """File descriptors 1 and 2 point at `path` meanwhile; a JVM started now keeps them."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    saved = (os.dup(1), os.dup(2))
    try:
        os.dup2(target, 1)
        os.dup2(target, 2)
        yield
    finally:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, target):
            os.close(fd)


def spark_log_path(cfg: AppConfig) -> Path:
    """Where a notebook's JVM writes: `<lakehouse>/_logs/` as for `make demo` (a remote
    lakehouse: `_logs/` in the repository)."""
    lakehouse = cfg.paths.lakehouse
    logs = REPO_ROOT / "_logs" if "://" in lakehouse else Path(lakehouse) / "_logs"
    return logs / f"notebook-{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}-{os.getpid()}.log"


def open_lakehouse(config_path: str | Path | None = None) -> Lakehouse:
    """Start (or reuse) the project's Spark session for the config and register the views.

    A JVM started here writes its output (Spark's log lines) to `spark_log_path`, not into
    the notebook, where it would bury the results.
    """
    cfg = notebook_config(config_path)
    if SparkContext._active_spark_context is None:
        log_path = spark_log_path(cfg)
        with _process_output_to(log_path):
            spark = build_spark(cfg, _BIND_PARAMETERS)
        print(f"Spark's log: {log_path}")
    else:
        spark = build_spark(cfg)
        for key, value in _BIND_PARAMETERS.items():
            spark.conf.set(key, value)
    return Lakehouse(spark, cfg, register_views(spark, cfg))


def to_pandas(df: DataFrame) -> pd.DataFrame:
    """`df.toPandas()` with DECIMAL columns as float, which plotting libraries accept.

    For result sets a chart or a table shows: everything is collected to the driver.
    """
    decimals = {f.name for f in df.schema.fields if isinstance(f.dataType, DecimalType)}
    return df.select(
        *[F.col(c).cast("double").alias(c) if c in decimals else F.col(c) for c in df.columns]
    ).toPandas()


def partition_filters(df: DataFrame) -> list[str]:
    """The partition filters of each file scan in the query plan (empty: no pruning).

    Expression ids (`#123`) are dropped so the text reads as the query was written.
    """
    plan = str(df._jdf.queryExecution().executedPlan().toString())
    return [re.sub(r"#\d+L?", "", f) for f in re.findall(r"PartitionFilters: \[(.*?)\]", plan)]


def funnel_by_country(
    bid_funnel_daily: DataFrame, impressions: DataFrame, clicks: DataFrame, conversions: DataFrame
) -> DataFrame:
    """requests -> wins -> impressions -> clicks -> conversions per country, largest first.

    requests and wins (won auctions) come from gold bid_funnel_daily by the bid request's
    country; impressions by their own country; clicks and conversions carry no country, so
    they count for their user's (the country of the user's latest impression). A missing
    country is 'unknown'.
    """
    country = F.coalesce(F.col("country"), F.lit(UNKNOWN_COUNTRY)).alias("country")
    bids = bid_funnel_daily.groupBy(country).agg(
        F.sum("bid_requests").alias("requests"), F.sum("won_impressions").alias("wins")
    )
    shown = impressions.groupBy(country).agg(F.count(F.lit(1)).alias("impressions"))
    latest = Window.partitionBy("user_id").orderBy(F.col("event_ts").desc(), F.col("country"))
    user_country = (
        impressions.where(F.col("user_id").isNotNull())
        .select("user_id", "country", F.row_number().over(latest).alias("_n"))
        .where("_n = 1")
        .select("user_id", country)
    )

    def per_country(events: DataFrame, name: str) -> DataFrame:
        return (
            events.select("user_id")
            .join(user_country, "user_id", "left")
            .groupBy(country)
            .agg(F.count(F.lit(1)).alias(name))
        )

    counts = ["requests", "wins", "impressions", "clicks", "conversions"]
    joined = (
        bids.join(shown, "country", "full_outer")
        .join(per_country(clicks, "clicks"), "country", "full_outer")
        .join(per_country(conversions, "conversions"), "country", "full_outer")
    )
    return joined.select(
        "country", *[F.coalesce(F.col(c), F.lit(0)).cast("long").alias(c) for c in counts]
    ).orderBy(F.col("requests").desc(), F.col("impressions").desc(), "country")


def credit_by_channel(
    conversion_attribution: DataFrame, channel: str = "website", top: int = 5
) -> DataFrame:
    """Each model's attributed credit per campaign and channel value, as a share of the
    campaign's credit under that model: how the models move credit between channels.

    `channel` is a column every model fills: `website` or `creative_id`, the Markov channel
    (Markov credits channels, not touches). A campaign's `top` channels by credit over all
    models keep their name, the rest are 'other'; a missing value is '(none)'. Columns:
    campaign_id, model, channel, credit, share.
    """
    credited = conversion_attribution.where(~F.col("touch_type").eqNullSafe(F.lit(UNATTRIBUTED)))
    value = F.coalesce(F.col(channel).cast("string"), F.lit("(none)")).alias("channel")
    per_value = credited.groupBy("campaign_id", "model", value).agg(F.sum("credit").alias("credit"))
    biggest_first = Window.partitionBy("campaign_id").orderBy(F.col("_total").desc(), "channel")
    ranks = (
        per_value.groupBy("campaign_id", "channel")
        .agg(F.sum("credit").alias("_total"))
        .withColumn("_rank", F.row_number().over(biggest_first))
    )
    named = F.when(F.col("_rank") <= top, F.col("channel")).otherwise(F.lit("other"))
    grouped = (
        per_value.join(ranks, ["campaign_id", "channel"])
        .groupBy("campaign_id", "model", named.alias("channel"))
        .agg(F.sum("credit").alias("credit"))
    )
    model_total = F.sum("credit").over(Window.partitionBy("campaign_id", "model"))
    return grouped.withColumn("share", F.col("credit") / model_total).orderBy(
        "campaign_id", "model", "channel"
    )


def latest_dq_run(dq_results: DataFrame) -> DataFrame:
    """The results of the newest data-quality run, failures first."""
    newest = dq_results.agg(F.max("run_ts").alias("_newest"))
    order = F.when(F.col("status") == "fail", 0).when(F.col("status") == "warn", 1).otherwise(2)
    return (
        dq_results.join(newest, F.col("run_ts") == F.col("_newest"))
        .drop("_newest")
        .orderBy(order, "check", "table", "scope")
    )
