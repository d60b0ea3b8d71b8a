"""Silver and gold are standard Delta tables: delta-rs (the `deltalake` package, no JVM) reads
exactly the rows Spark reads, and no table's protocol asks for a reader feature that would lock
delta-rs (or another plain Delta reader) out."""

from __future__ import annotations

import math
from collections import Counter
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pytest
from deltalake import DeltaTable
from deltalake.table import SUPPORTED_READER_FEATURES
from pyspark.sql import Row, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import TimestampNTZType, TimestampType

from adlake import deltalog
from adlake.tables import (
    GOLD_TABLES,
    SILVER_BID_REQUESTS,
    SILVER_CLICKS,
    SILVER_CONVERSIONS,
    SILVER_CREATIVES,
    SILVER_IMPRESSIONS,
    SILVER_QUARANTINE,
)
from tests.sample_lakehouse import SampleLakehouse, sample_lakehouse

SILVER = tuple(
    spec.relative_path
    for spec in (
        SILVER_IMPRESSIONS,
        SILVER_CLICKS,
        SILVER_CONVERSIONS,
        SILVER_BID_REQUESTS,
        SILVER_CREATIVES,
        SILVER_QUARANTINE,
    )
)
INTEROP_TABLES = (*SILVER, *(spec.relative_path for spec in GOLD_TABLES))
# The sample data's rows all pass silver's rules; every other table must have rows to compare.
MAY_BE_EMPTY = {SILVER_QUARANTINE.relative_path}


@pytest.fixture(scope="module")
def lake(spark: SparkSession, tmp_path_factory: pytest.TempPathFactory) -> SampleLakehouse:
    return sample_lakehouse(spark, tmp_path_factory)


def _plain(value: Any) -> Any:
    """One Python value for Spark's and pyarrow's renderings of the same cell."""
    if isinstance(value, Row):  # a struct: fields in order
        return tuple(_plain(v) for v in value)
    if isinstance(value, dict):  # pyarrow's struct (maps do not occur in these tables)
        return tuple(_plain(v) for v in value.values())
    if isinstance(value, list | tuple):
        return tuple(_plain(v) for v in value)
    if isinstance(value, Decimal):
        return value.normalize()
    if isinstance(value, float) and math.isnan(value):
        return "NaN"
    if isinstance(value, datetime):  # timestamps are compared as epoch microseconds
        raise AssertionError(f"timestamp left unconverted: {value!r}")
    assert value is None or isinstance(value, str | int | float | bool | date), type(value)
    return value


def _spark_rows(spark: SparkSession, location: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    """Columns and rows as Spark reads them, timestamps as UTC epoch microseconds."""
    df = spark.read.format("delta").load(location)
    micros = {
        f.name for f in df.schema.fields if isinstance(f.dataType, TimestampType | TimestampNTZType)
    }
    selected = df.select(*[F.unix_micros(c).alias(c) if c in micros else c for c in df.columns])
    return df.columns, [tuple(_plain(v) for v in row) for row in selected.collect()]


def _delta_rs_rows(table: pa.Table, columns: list[str]) -> list[tuple[Any, ...]]:
    """The same from a pyarrow table: timestamp columns (UTC instants) as epoch microseconds."""
    arrays = []
    for name in columns:
        array = table.column(name)
        if pa.types.is_timestamp(array.type):
            array = array.cast(pa.timestamp("us", tz=array.type.tz)).cast(pa.int64())
        arrays.append(array.to_pylist())
    return [tuple(_plain(v) for v in row) for row in zip(*arrays, strict=True)]


@pytest.mark.parametrize("relative", INTEROP_TABLES)
def test_delta_rs_reads_the_same_rows_as_spark(
    spark: SparkSession, lake: SampleLakehouse, relative: str
) -> None:
    location = lake.cfg.table_path(relative)
    table = DeltaTable(location)
    assert table.version() == deltalog.latest_version(spark, location)
    columns, spark_rows = _spark_rows(spark, location)
    arrow = table.to_pyarrow_table()
    assert sorted(arrow.column_names) == sorted(columns)
    delta_rs_rows = _delta_rs_rows(arrow, columns)

    assert relative in MAY_BE_EMPTY or spark_rows, f"{relative} is empty: nothing compared"
    only_spark = Counter(spark_rows) - Counter(delta_rs_rows)
    only_delta_rs = Counter(delta_rs_rows) - Counter(spark_rows)
    assert (len(delta_rs_rows), only_spark, only_delta_rs) == (len(spark_rows), {}, {}), (
        f"{relative}: {len(spark_rows)} rows in Spark, {len(delta_rs_rows)} in delta-rs; "
        f"columns {columns}; first rows only in Spark {list(only_spark)[:3]}, only in "
        f"delta-rs {list(only_delta_rs)[:3]}"
    )


def test_no_table_needs_a_reader_feature_delta_rs_lacks(lake: SampleLakehouse) -> None:
    """Reader version 1 (Parquet + JSON log, what every Delta reader reads) and no table
    property that raises it: deletion vectors or column mapping would make delta-rs's
    pyarrow reader refuse the table. The versions found are printed for the README."""
    found = {}
    for relative in INTEROP_TABLES:
        table = DeltaTable(lake.cfg.table_path(relative))
        protocol = table.protocol()
        found[relative] = (
            protocol.min_reader_version,
            protocol.min_writer_version,
            protocol.reader_features,
            protocol.writer_features,
            table.metadata().configuration,
        )
    print("\n".join(f"{t}: reader/writer/features/properties {p}" for t, p in found.items()))
    locking = {
        t: p
        for t, p in found.items()
        if p[0] != 1 or not set(p[2] or ()) <= SUPPORTED_READER_FEATURES
        or {"delta.enableDeletionVectors", "delta.columnMapping.mode"} & set(p[4])
    }  # fmt: skip
    assert locking == {}, (
        "a table now needs more than Delta reader version 1; check delta-rs still reads it "
        f"and document the property in the README: {locking}"
    )
