"""The bronze-vs-silver reconciliation check: bronze rows of the runs silver has finished
against silver rows + silver quarantine rows + audited duplicates, from the tables.

Pure DataFrame functions like the other checks (`adlake.quality.checks`); the run collects
`reconciled_runs` first and passes the cuts in as values (see `bronze_silver_reconciliation`).
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import reduce

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from adlake import schemas
from adlake.quality.checks import contribution, contribution_rows
from adlake.settings.quality import RECONCILIATION
from adlake.tables import BRONZE_BY_SOURCE, SILVER_JOB, TARGETS_BY_SOURCE


def _bronze_source() -> Column:
    """Map of silver target (ops/batch_audit `source`) -> the bronze source it is read from."""
    return F.create_map(
        *[F.lit(x) for s, targets in TARGETS_BY_SOURCE.items() for t in targets for x in (t, s)]
    )


def reconciled_runs(batch_audit: DataFrame) -> DataFrame:
    """Per bronze source (`source`): `cut`, the newest bronze run silver has fully processed
    whose audit rows it does not split.

    Silver reads bronze in commit order, so every run below the lowest run of a later batch
    is complete; a cut there must also leave no audit row (a [min, max] run range of a
    batch and target) straddling it, so the duplicates of runs <= cut are exactly those of
    audit rows with max <= cut. The newest batch is thus never reconciled until a later one
    exists: in a running stream its run may still be half read.
    """
    to_source = _bronze_source()
    ranges = batch_audit.where(
        (F.col("job") == SILVER_JOB)
        & F.col("bronze_run_seq_min").isNotNull()
        & F.col("bronze_run_seq_max").isNotNull()
    ).select(
        to_source[F.col("source")].alias("source"),
        F.col("bronze_run_seq_min").alias("lo"),
        F.col("bronze_run_seq_max").alias("hi"),
    )
    earlier = Window.partitionBy("source").orderBy("lo").rangeBetween(Window.unboundedPreceding, -1)
    highest_before = F.max("hi").over(earlier)
    clean = highest_before.isNull() | (highest_before < F.col("lo"))
    return (
        ranges.where(F.col("source").isNotNull())
        .withColumn("_cut", F.when(clean, F.col("lo") - 1))
        .groupBy("source")
        .agg(F.max("_cut").alias("cut"))
    )


def bronze_silver_reconciliation(
    bronze: Mapping[str, DataFrame],
    silver_tables: Mapping[str, DataFrame],
    quarantine: DataFrame | None,
    batch_audit: DataFrame,
    cuts: Mapping[str, int | None],
) -> DataFrame:
    """Per bronze source, over its runs <= its cut, recomputed from the tables: bronze rows
    (value) against silver rows + silver quarantine rows + audited duplicates (total);
    newest = the cut. Silver and quarantine rows find their run through their
    `_source_file` (a landing file is one bronze run). `bronze` maps source -> bronze table,
    `silver_tables` target -> silver table (a missing one counts as empty), `cuts` source ->
    the cut of `reconciled_runs` (a null cut gives only newest = null, no source gives nothing).

    The cuts come in as values, not as a joined DataFrame: each table is then scanned for all
    sources together, with the runs past the cut pruned at the scan (a joined cut put
    ops/batch_audit 19 times and each bronze table 3-4 times into the query's plan).
    """
    spark = batch_audit.sparkSession
    with_cut = [s for s in bronze if s in cuts]
    newest = spark.createDataFrame(
        [(BRONZE_BY_SOURCE[s].relative_path, s, cuts[s]) for s in with_cut],
        "table string, source string, cut long",
    )
    parts = [
        contribution_rows(
            newest,
            contribution(RECONCILIATION, F.col("table"), F.col("source"), newest=F.col("cut")),
        )
    ]
    reconciled = {s: c for s in with_cut if (c := cuts[s]) is not None}
    if not reconciled:
        return parts[0]
    source = F.col("source")
    check_table = F.create_map(
        *[F.lit(x) for s in reconciled for x in (s, BRONZE_BY_SOURCE[s].relative_path)]
    )[source]
    per_file = reduce(
        DataFrame.unionByName,
        [
            bronze[s]
            .where(F.col(schemas.RUN_SEQ) <= F.lit(cut))
            .groupBy(schemas.SOURCE_FILE, schemas.RUN_SEQ)
            .agg(F.count(F.lit(1)).alias("_rows"))
            .withColumn("source", F.lit(s))
            for s, cut in reconciled.items()
        ],
    )
    parts.append(
        contribution_rows(
            per_file, contribution(RECONCILIATION, check_table, source, value=F.col("_rows"))
        )
    )
    runs = per_file.select("source", schemas.SOURCE_FILE).distinct()  # the reconciled files
    target_source = {t: s for s in reconciled for t in TARGETS_BY_SOURCE[s]}
    stored = [
        silver_tables[t].select(schemas.SOURCE_FILE, F.lit(s).alias("source"))
        for t, s in target_source.items()
        if t in silver_tables
    ]
    if quarantine is not None:
        stored.append(
            quarantine.where(source.isin(*target_source)).select(
                schemas.SOURCE_FILE, _bronze_source()[source].alias("source")
            )
        )
    if stored:
        matched = reduce(DataFrame.unionByName, stored).join(
            F.broadcast(runs), ["source", schemas.SOURCE_FILE]
        )
        parts.append(
            contribution_rows(
                matched, contribution(RECONCILIATION, check_table, source, total=F.lit(1))
            )
        )
    cut_of = F.create_map(
        *[x for s, c in reconciled.items() for x in (F.lit(s), F.lit(c).cast("long"))]
    )
    duplicates = (
        batch_audit.where(F.col("job") == SILVER_JOB)
        .select(
            _bronze_source()[source].alias("source"),
            F.col("bronze_run_seq_max"),
            F.col("duplicates"),
        )
        .where(F.col("bronze_run_seq_max") <= cut_of[source])
    )
    parts.append(
        contribution_rows(
            duplicates,
            contribution(
                RECONCILIATION, check_table, source, total=F.coalesce("duplicates", F.lit(0))
            ),
        )
    )
    return reduce(DataFrame.unionByName, parts)
