"""The analyst notebooks: committed without outputs, parameterized by config path, and each
runs top to bottom in its own kernel (the project's python) against the sample lakehouse,
draws its charts and renders to HTML. `ruff check notebooks` lints them like code."""

from __future__ import annotations

import os
from datetime import date, datetime
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbconvert import HTMLExporter
from pyspark.sql import SparkSession
from pyspark.sql.types import LongType, StringType, StructField, StructType, TimestampType

from adlake.config import ConfigError
from adlake.notebook import (
    REPO_ROOT,
    funnel_by_country,
    notebook_config,
    open_lakehouse,
    partition_filters,
    view_name,
)
from adlake.tables import GOLD_TABLES
from tests.sample_lakehouse import SampleLakehouse, sample_lakehouse

NOTEBOOKS_DIR = REPO_ROOT / "notebooks"
NOTEBOOKS = sorted(NOTEBOOKS_DIR.glob("*.ipynb"))
# Charts (PNG outputs) each notebook must draw on the sample lakehouse.
CHARTS = {"campaign_performance.ipynb": 4, "getting_started.ipynb": 0}


@pytest.fixture(scope="module")
def lake(spark: SparkSession, tmp_path_factory: pytest.TempPathFactory) -> SampleLakehouse:
    return sample_lakehouse(spark, tmp_path_factory)


def test_notebooks_are_committed_without_outputs_and_take_a_config_path() -> None:
    assert {p.name for p in NOTEBOOKS} == set(CHARTS)
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        nbformat.validate(nb)
        code = [c for c in nb.cells if c.cell_type == "code"]
        assert [(c.outputs, c.execution_count) for c in code] == [([], None)] * len(code), path
        parameters = [c for c in code if "parameters" in c.metadata.get("tags", [])]
        assert len(parameters) == 1 and "ADLAKE_CONFIG" in parameters[0].source, path
        assert nb.metadata.kernelspec.name == "python3"


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_top_to_bottom_and_renders(
    lake: SampleLakehouse, path: Path, tmp_path: Path
) -> None:
    nb = nbformat.read(path, as_version=4)
    # The kernel is this interpreter (the project's venv) with this checkout's lib/ first.
    env = {
        **os.environ,
        "ADLAKE_CONFIG": str(lake.config_path),
        "PYTHONPATH": os.pathsep.join([str(REPO_ROOT / "lib"), os.environ.get("PYTHONPATH", "")]),
    }
    client = NotebookClient(
        nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    )
    client.execute(env=env)  # raises CellExecutionError naming the failing cell

    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert [o for o in outputs if o.output_type == "error"] == []
    charts = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(charts) == CHARTS[path.name]
    html, _ = HTMLExporter().from_notebook_node(nb)
    (tmp_path / f"{path.stem}.html").write_text(html, encoding="utf-8")
    assert html.count('<img alt="No description has been provided') == CHARTS[path.name]


def test_open_lakehouse_registers_a_view_per_table_and_prunes_by_event_date(
    lake: SampleLakehouse,
) -> None:
    opened = open_lakehouse(lake.config_path)
    assert {view_name(spec.relative_path) for spec in GOLD_TABLES} <= set(opened.views)
    assert "silver_impressions" in opened.views and "ops_dq_results" in opened.views
    query = opened.sql(
        "SELECT * FROM gold_campaign_daily WHERE campaign_id = :c "
        "AND event_date BETWEEN :first_day AND :last_day",
        c="x",
        first_day=date(2026, 11, 2),
        last_day=date(2026, 11, 3),
    )
    assert partition_filters(query) == [
        "isnotnull(event_date), (event_date >= 2026-11-02), (event_date <= 2026-11-03)"
    ]


def test_notebook_config_resolves_paths_against_the_repo_root(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)  # a kernel's working directory is the notebook's folder
    monkeypatch.delenv("ADLAKE_CONFIG", raising=False)
    assert notebook_config().paths.lakehouse == str(REPO_ROOT / "lakehouse")
    monkeypatch.setenv("ADLAKE_CONFIG", "conf/local.yaml")
    assert notebook_config().paths.landing == str(REPO_ROOT / "data" / "landing")
    with pytest.raises(ConfigError, match="ADLAKE_CONFIG"):
        notebook_config("conf/missing.yaml")


def test_funnel_by_country_counts_clicks_and_conversions_for_the_users_country(
    spark: SparkSession,
) -> None:
    funnel_schema = (
        "event_date DATE, country STRING, website STRING, bid_requests LONG, won_impressions LONG"
    )
    bids = spark.createDataFrame(
        [
            (date(2026, 11, 1), "DE", "a.com", 10, 3),
            (date(2026, 11, 2), "DE", "b.com", 5, 2),
            (date(2026, 11, 1), None, "a.com", 4, 0),
        ],
        funnel_schema,
    )
    events = StructType(
        [
            StructField("user_id", StringType()),
            StructField("event_ts", TimestampType()),
            StructField("country", StringType()),
        ]
    )
    impressions = spark.createDataFrame(
        [
            ("u1", datetime(2026, 11, 1, 10), "FR"),
            ("u1", datetime(2026, 11, 1, 11), "DE"),  # u1's latest: DE
            ("u2", datetime(2026, 11, 1, 12), "DE"),
            ("u3", datetime(2026, 11, 1, 12), None),
        ],
        events,
    )
    user_only = StructType([StructField("user_id", StringType())])
    clicks = spark.createDataFrame([("u1",), ("u2",), ("u3",), ("u9",)], user_only)
    conversions = spark.createDataFrame([("u1",)], user_only)

    rows = [tuple(r) for r in funnel_by_country(bids, impressions, clicks, conversions).collect()]
    assert rows == [
        ("DE", 15, 5, 2, 2, 1),
        ("unknown", 4, 0, 1, 2, 0),  # u3 (no country) and u9 (no impression)
        ("FR", 0, 0, 1, 0, 0),
    ]
    assert funnel_by_country(bids, impressions, clicks, conversions).schema["clicks"].dataType == (
        LongType()
    )
