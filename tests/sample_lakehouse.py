"""One small lakehouse from generated data, built once per test session and shared by the
interoperability and notebook tests (each of which only reads it).

The data is denser in clicks and conversions than the generator's defaults, so every
attribution model and the funnel have something to show at 1,500 impressions; one file per
source and no corrupt copy keep the build to the fewest Spark jobs (bronze's handling of
corrupt files has its own tests).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timezone
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from adlake.bronze import ingest as bronze_ingest
from adlake.config import SOURCES, AppConfig, load_config
from adlake.gold.run import build_gold
from adlake.quality import run as quality
from adlake.silver import run as silver_run
from adlake_datagen import DatagenConfig, generate_landing
from tests.conftest import write_config

SAMPLE_DATA = DatagenConfig(
    impressions=1500, seed=7, files=1, truncated_avro_files=0, days=3,
    start_date=date(2026, 11, 1), ctr=0.05, conversion_rate=0.3,
)  # fmt: skip
# The monitor grades as of the day after the data, as a run right after it would.
MONITOR_AT = datetime(2026, 11, 4, 6, 0, tzinfo=timezone.utc)


@dataclass(frozen=True)
class SampleLakehouse:
    """The config file (paths under the session's temp dir) and that config, loaded."""

    config_path: Path
    cfg: AppConfig


_built: dict[str, SampleLakehouse] = {}


def sample_lakehouse(spark: SparkSession, factory: pytest.TempPathFactory) -> SampleLakehouse:
    """Generate SAMPLE_DATA and run bronze, silver, gold and quality on it, once per session."""
    if "sample" not in _built:
        root = factory.mktemp("sample-lakehouse")
        config_path = write_config(root)
        cfg = load_config(config_path)
        generate_landing(SAMPLE_DATA, Path(cfg.paths.landing))
        bronze_ingest.run_batch(spark, cfg, SOURCES)
        silver_run.run_batch(spark, cfg, SOURCES)
        build_gold(spark, cfg)
        quality.monitor_once(spark, cfg, now=MONITOR_AT)
        _built["sample"] = SampleLakehouse(config_path, cfg)
    return _built["sample"]
