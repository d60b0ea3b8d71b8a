"""The one I/O module: Delta table creation and the writers every job uses, plus file listing."""

from __future__ import annotations

import logging

from delta.tables import DeltaTable
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from adlake.tables import TableSpec

log = logging.getLogger(__name__)

# Locations known to exist in this process; tables are never dropped by AdLake jobs.
_known_tables: set[str] = set()

_FILE_LISTING_COLUMNS = ("path", "length", "modificationTime")


def ensure_table(spark: SparkSession, spec: TableSpec, location: str) -> None:
    """Create the table with its declared schema and partitioning if it does not exist yet.

    Creating up front (instead of letting the first append infer it) keeps the schema the
    declared one even when the first batch is empty.
    """
    if location in _known_tables:
        return
    (
        DeltaTable.createIfNotExists(spark)
        .location(location)
        .addColumns(spec.schema)
        .partitionedBy(*spec.partition_by)
        .execute()
    )
    _known_tables.add(location)


def read_table(spark: SparkSession, location: str) -> DataFrame:
    """Batch read of a path-based Delta table."""
    return spark.read.format("delta").load(location)


def append_idempotent(
    df: DataFrame, spec: TableSpec, location: str, app_id: str, version: int
) -> None:
    """Append in one Delta transaction that Delta skips if (app_id, version) was already committed.

    This is what makes a re-run after a crash write each batch exactly once: the same batch
    always carries the same version, and Delta records the last version per app id in the
    table's own log, atomically with the data.
    """
    ordered = df.select(*[F.col(f.name).cast(f.dataType) for f in spec.schema.fields])
    (
        ordered.write.format("delta")
        .mode("append")
        .option("txnAppId", app_id)
        .option("txnVersion", version)
        .save(location)
    )
    log.info("append %s app_id=%s version=%d", spec.name, app_id, version)


def list_landing_files(spark: SparkSession, directory: str, path_glob: str) -> DataFrame:
    """Files under `directory` matching `path_glob`, as (path, length, modificationTime).

    binaryFile prunes its `content` column, so this lists through the Hadoop FileSystem
    (local disk, HDFS, S3A alike) without reading the files.
    """
    return (
        spark.read.format("binaryFile")
        .option("pathGlobFilter", path_glob)
        .load(directory)
        .select(*_FILE_LISTING_COLUMNS)
    )


def merge_insert_new(df: DataFrame, spec: TableSpec, location: str) -> int:
    """Insert the rows whose keys the table does not hold yet; returns how many were inserted.

    Insert-if-absent MERGE on the spec's keys is what makes re-runs and stream replays
    idempotent: the same row arriving twice, in one batch or in two, is stored once.
    The source must hold one row per key (callers deduplicate first).
    """
    if not spec.keys:
        raise ValueError(f"{spec.name} declares no keys to merge on")
    source = df.select(*[F.col(f.name).cast(f.dataType) for f in spec.schema.fields])
    condition = " AND ".join(f"t.`{k}` = s.`{k}`" for k in spec.keys)
    metrics = (
        DeltaTable.forPath(df.sparkSession, location)
        .alias("t")
        .merge(source.alias("s"), condition)
        .whenNotMatchedInsertAll()
        .execute()
        .first()
    )
    inserted = int(metrics["num_inserted_rows"]) if metrics is not None else 0
    log.info("merge %s inserted=%d", spec.name, inserted)
    return inserted


def replace_table(df: DataFrame, spec: TableSpec, location: str) -> None:
    """Replace the whole table in one transaction (small dimensions refreshed every run)."""
    ordered = df.select(*[F.col(f.name).cast(f.dataType) for f in spec.schema.fields])
    ordered.write.format("delta").mode("overwrite").save(location)
    log.info("replace %s", spec.name)


def overwrite_derived(
    df: DataFrame,
    name: str,
    location: str,
    partition_by: tuple[str, ...],
    inputs_fingerprint: str | None = None,
) -> None:
    """Replace a gold table recomputed from silver, in one transaction.

    A full replace is what makes gold idempotent and restates late data: the table always
    equals the function of the current silver tables. The schema is the transform's output.
    `inputs_fingerprint` (the input table versions and parameters) is stored as the commit's
    userMetadata so the next run can tell that nothing changed (`derived_commit`).
    """
    writer = (
        df.write.format("delta")
        .mode("overwrite")
        .option("overwriteSchema", "true")
        .partitionBy(*partition_by)
    )
    if inputs_fingerprint is not None:
        writer = writer.option("userMetadata", inputs_fingerprint)
    writer.save(location)
    log.info("replace %s", name)


def table_version(spark: SparkSession, location: str) -> int | None:
    """Latest committed version of a Delta table, None when there is no table."""
    if not DeltaTable.isDeltaTable(spark, location):
        return None
    row = DeltaTable.forPath(spark, location).history(1).select("version").first()
    return int(row["version"]) if row is not None else None


_MAINTENANCE_OPERATIONS = ("OPTIMIZE", "VACUUM START", "VACUUM END")


def derived_commit(spark: SparkSession, location: str) -> tuple[str | None, int]:
    """(userMetadata, numOutputRows) of the latest data write of a derived table.

    Maintenance commits (OPTIMIZE, VACUUM) are skipped: they change files, not content.
    (None, 0) when there is no table.
    """
    if not DeltaTable.isDeltaTable(spark, location):
        return None, 0
    row = (
        DeltaTable.forPath(spark, location)
        .history(50)
        .where(~F.col("operation").isin(*_MAINTENANCE_OPERATIONS))
        .orderBy(F.col("version").desc())
        .select("userMetadata", "operationMetrics")
        .first()
    )
    if row is None:
        return None, 0
    return row["userMetadata"], int((row["operationMetrics"] or {}).get("numOutputRows", 0))
