"""One silver batch as data: the raw record, quarantine rows, batch statistics, audit row.

Pure functions and typed results, used by `adlake.silver.run`; `batch_stats` is the one
aggregation (one Spark action) that every count of a batch comes from.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from adlake import clock, schemas, storage
from adlake.settings import silver as rules_conf
from adlake.settings.silver import Rule
from adlake.silver.dedup import DEDUP_KEY, DUPLICATE_IN_BATCH
from adlake.silver.standardize import (
    BRONZE_RUN_SEQ,
    COUNTRY_RAW,
    EVENT_DATE,
    EVENT_TS,
    LOCATION_RAW,
    RECORD,
)

_METADATA = {
    schemas.RESCUED_DATA,
    schemas.SOURCE_FILE,
    schemas.INGESTED_AT,
    schemas.RUN_SEQ,
    schemas.INGESTION_DATE,
}


@dataclass(frozen=True)
class AuditRow:
    """What one batch did to one silver table."""

    source: str
    batch_id: int
    rows_in: int
    rows_written: int
    quarantined: int
    late_rows: int
    warned_rows: int
    unknown_countries: int
    rule_counts: dict[str, int]
    duplicates_in_batch: int = 0
    duplicates_existing: int = 0

    @property
    def duplicates(self) -> int:
        """Rows not stored because their key (or rejected record) was already stored."""
        return self.duplicates_in_batch + self.duplicates_existing

    @property
    def unreconciled(self) -> int:
        """Rows of the batch neither stored nor counted as duplicates (0 when all is well)."""
        return reconciliation_mismatch(
            self.rows_in,
            self.rows_written,
            self.quarantined,
            self.duplicates_in_batch,
            self.duplicates_existing,
        )


def reconciliation_mismatch(
    rows_in: int, written: int, quarantined: int, duplicates_in_batch: int, duplicates_existing: int
) -> int:
    """rows_in - (written + quarantined + duplicates): positive = rows lost, negative = extra.

    Each term is counted on its own: rows_in and the in-batch duplicates by the batch's
    aggregation, written and quarantined by the MERGEs, the existing duplicates as the rows
    the MERGEs read but did not insert; so a row lost between them shows here.
    """
    return rows_in - (written + quarantined + duplicates_in_batch + duplicates_existing)


def existing_duplicates(merge: storage.MergeCounts, candidates: int) -> int:
    """Rows a MERGE read and did not insert (their key was stored already).

    A MERGE that inserted nothing commits nothing, so its source count is unknown: every one
    of the `candidates` (the distinct rows handed to it) is then taken as already stored.
    """
    read = candidates if merge.source_rows is None else merge.source_rows
    return read - merge.inserted


def with_raw_record(df: DataFrame) -> DataFrame:
    """Attach the bronze record (contract fields and rescued data) for the quarantine.

    A struct, not text: `record_json_if_rejected` writes JSON only for rejected rows, so
    the rows that pass (nearly all) never pay for serializing their record.
    """
    fields = [F.col(c) for c in df.columns if c not in _METADATA - {schemas.RESCUED_DATA}]
    return df.withColumn(RECORD, F.struct(*fields))


def record_json_if_rejected(valid: Column) -> Callable[[DataFrame], DataFrame]:
    """The attached bronze record as JSON on rejected rows, null on valid ones."""

    def transform(df: DataFrame) -> DataFrame:
        return df.withColumn(RECORD, F.when(~valid, F.to_json(F.col(RECORD))))

    return transform


UNKNOWN_COUNTRY = "_unknown_country"
_RAW_COUNTRY = (COUNTRY_RAW, LOCATION_RAW)


def for_writes(table_columns: Sequence[str]) -> Callable[[DataFrame], DataFrame]:
    """Only the columns the writes and `batch_stats` read: the table's, the raw record, the
    dedup key, the failed rules, the bronze run, and `_unknown_country` (a raw country
    given that matched no code) in place of the raw country text.

    Run after the rules and before the in-batch duplicate flag: the texts only the rules
    read (raw_timestamp, raw_cost, the raw country, the creative checks' flags) would
    otherwise be shuffled, sorted and stored with every row of the batch.
    """

    def transform(df: DataFrame) -> DataFrame:
        raw = next((c for c in _RAW_COUNTRY if c in df.columns), None)
        unknown = F.col("country").isNull() & F.col(raw).isNotNull() if raw else F.lit(False)
        keep = [*table_columns, RECORD, DEDUP_KEY, *rules_conf.RULE_COLUMNS.values()]
        return df.select(*dict.fromkeys(keep), BRONZE_RUN_SEQ, unknown.alias(UNKNOWN_COUNTRY))

    return transform


@dataclass(frozen=True)
class BatchStats:
    """Counts of one checked batch, from one aggregation over it."""

    rows_in: int
    rejected_rows: int
    # Valid rows whose key an earlier row of the batch has; rejected rows of distinct records.
    valid_duplicates_in_batch: int
    distinct_rejected: int
    late_rows: int
    warned_rows: int
    unknown_countries: int
    max_written_ts: datetime | None
    run_min: int | None
    run_max: int | None
    rule_counts: dict[str, int]
    first_rule_counts: dict[str, int]
    event_dates: tuple[date, ...]
    undated_rows: int


def quarantine_rows(
    checked: DataFrame, target: str, run_id: str, batch_id: int, started: datetime
) -> DataFrame:
    """The rejected rows of a checked batch as silver/quarantine rows, one per distinct record.

    `_record_key` hashes the target and the record's JSON: the quarantine MERGE's key, so a
    record quarantined again (a replay, a re-delivery) is stored once.
    """
    quarantine_rules = F.col(rules_conf.RULE_COLUMNS[rules_conf.QUARANTINE])
    return (
        checked.where(F.size(quarantine_rules) > 0)
        .select(
            F.lit(target).alias("source"),
            F.col(RECORD).alias("record"),
            quarantine_rules.alias("failed_rules"),
            F.lit(run_id).alias("run_id"),
            F.lit(batch_id).cast("long").alias("batch_id"),
            F.lit(started).alias("quarantined_at"),
            F.col(schemas.SOURCE_FILE),
            F.sha2(F.concat_ws("\u001f", F.lit(target), F.col(RECORD)), 256).alias("_record_key"),
        )
        .dropDuplicates(["_record_key"])
    )


def batch_stats(
    checked: DataFrame, rules: Sequence[Rule], target: str, threshold: datetime | None
) -> BatchStats:
    """Every count of the audit, the metrics and the bounded MERGE in one aggregation, over
    a checked batch narrowed by `for_writes`."""
    quarantine_rules = F.col(rules_conf.RULE_COLUMNS[rules_conf.QUARANTINE])
    rejected = F.size(quarantine_rules) > 0
    good = ~rejected
    late = (F.col(EVENT_TS) < F.lit(threshold)) if threshold else F.lit(False)
    all_rules = F.concat(*[F.col(rules_conf.RULE_COLUMNS[a]) for a in rules_conf.ACTIONS])
    names = [r.name for r in rules if target in r.sources]
    quarantine_names = [
        r.name for r in rules if target in r.sources and r.action == rules_conf.QUARANTINE
    ]
    totals = checked.agg(
        F.count(F.lit(1)).alias("rows_in"),
        F.count_if(rejected).alias("rejected"),
        F.count_if(good & F.col(DUPLICATE_IN_BATCH)).alias("valid_dups"),
        # The only distinct aggregate: valid rows all map to null, so its shuffle carries
        # about one row per distinct rejected record, not one per row.
        F.count_distinct(F.when(rejected, F.col(RECORD))).alias("distinct_rejected"),
        F.count_if(late).alias("late_rows"),
        F.count_if(F.size(F.col(rules_conf.RULE_COLUMNS[rules_conf.WARN])) > 0).alias(
            "warned_rows"
        ),
        F.count_if(F.col(UNKNOWN_COUNTRY)).alias("unknown_countries"),
        # Written rows only: a quarantined row from 2099 must not make every later row late.
        F.max(F.when(good, F.col(EVENT_TS))).alias("max_written_ts"),
        F.min(BRONZE_RUN_SEQ).alias("run_min"),
        F.max(BRONZE_RUN_SEQ).alias("run_max"),
        F.collect_set(F.when(good, F.col(EVENT_DATE))).alias("event_dates"),
        F.count_if(good & F.col(EVENT_DATE).isNull()).alias("undated_rows"),
        *[
            F.count_if(F.array_contains(all_rules, F.lit(n))).alias(f"rule_{i}")
            for i, n in enumerate(names)
        ],
        *[
            F.count_if(F.try_element_at(quarantine_rules, F.lit(1)) == F.lit(n)).alias(f"first_{i}")
            for i, n in enumerate(quarantine_names)
        ],
    ).first()
    assert totals is not None
    max_ts = totals["max_written_ts"]
    return BatchStats(
        rows_in=int(totals["rows_in"]),
        rejected_rows=int(totals["rejected"]),
        valid_duplicates_in_batch=int(totals["valid_dups"]),
        distinct_rejected=int(totals["distinct_rejected"]),
        late_rows=int(totals["late_rows"]),
        warned_rows=int(totals["warned_rows"]),
        unknown_countries=int(totals["unknown_countries"]),
        max_written_ts=clock.aware(max_ts) if max_ts is not None else None,
        run_min=totals["run_min"],
        run_max=totals["run_max"],
        rule_counts={
            n: int(totals[f"rule_{i}"]) for i, n in enumerate(names) if totals[f"rule_{i}"]
        },
        first_rule_counts={
            n: int(totals[f"first_{i}"])
            for i, n in enumerate(quarantine_names)
            if totals[f"first_{i}"]
        },
        event_dates=tuple(sorted(totals["event_dates"])),
        undated_rows=int(totals["undated_rows"]),
    )
