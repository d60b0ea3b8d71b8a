"""Bronze ingestion runs: landing files -> bronze tables and quarantine, exactly once.

Both modes go through `ingest_files`. The file log (`ops/ingest_file_log`) is a write-ahead
log: a run first records the files it plans to ingest, then appends to bronze and quarantine
with Delta idempotent writes keyed by (source, run_seq), then records the files committed
with their row counts. A crash anywhere is repaired by the next run, batch or stream, which
redoes the pending plan (Delta skips the appends that had already committed) before taking
new files. The streaming checkpoint only decides when files are looked at; the log decides
whether they are ingested, so mixing batch and stream runs never ingests a file twice.

Two writers on one source: the jobs hold a lease per source (`adlake.lease`), and in case
two runs still meet (no lease, or an object store without atomic create), a run whose plan
row was not its own commit (another run planned the same run number first) stops before
writing anything, so no file is ever logged as committed with another run's rows.

A file re-landed under a logged name with a new size or modification time is reported: a
warning, `adlake_bronze_changed_files_total` and a `changed` row in the file log; with
`sources.<name>.reingest_changed` it is also ingested again as part of a new run.
"""

from __future__ import annotations

import logging
import re
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from pyspark.sql import DataFrame, Observation, Row, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.streaming.query import StreamingQuery
from pyspark.sql.types import (
    BinaryType,
    LongType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

from adlake import bronze, clock, faults, metrics, schemas, storage
from adlake.config import AppConfig
from adlake.streams import stop_on_signals, wait_for_queries, with_trigger
from adlake.tables import (
    BRONZE_BY_SOURCE,
    BRONZE_JOB,
    BRONZE_QUARANTINE,
    CHANGED,
    COMMITTED,
    INGEST_FILE_LOG,
    PLANNED,
)

log = logging.getLogger(__name__)

# A run's records are counted per file in the pass that writes them (one aggregate per file
# and outcome), so a backlog of more files is ingested as several runs.
MAX_FILES_PER_RUN = 128

_BINARY_FILE_SCHEMA = StructType(
    [
        StructField("path", StringType(), False),
        StructField("modificationTime", TimestampType(), False),
        StructField("length", LongType(), False),
        StructField("content", BinaryType(), True),
    ]
)


@dataclass(frozen=True)
class RunResult:
    """What one ingest run wrote; `records == bronze_rows + quarantined_rows` per run."""

    source: str
    run_seq: int
    mode: str
    files: int
    bronze_rows: int
    quarantined_rows: int
    corrupt_files: int
    seconds: float
    quarantined_by_reason: tuple[tuple[str, int], ...] = ()
    changed_files: int = 0  # re-landed files found by this run (ingested when reingest_changed)

    @property
    def records(self) -> int:
        return self.bronze_rows + self.quarantined_rows


class CorruptFileNotIdentifiedError(RuntimeError):
    """A read failed and no input file could be blamed, so the run stops instead of guessing."""


class ConcurrentRunError(RuntimeError):
    """Another run of the same source planned the same run number first; nothing was written."""


# (size, modification ms) of a file as listed; None in log rows written before they were kept.
FileStats = tuple[int | None, int | None]


def _bare(path: str) -> str:
    """A path without scheme and leading slashes, to match `file:/x` against `file:///x`."""
    return re.sub(r"^[a-zA-Z][a-zA-Z0-9+.-]*:/*", "", path).lstrip("/")


def _blamed_file(error: Exception, files: Iterable[str]) -> str | None:
    """The input file Spark's error names (FAILED_READ_FILE carries the path), if any."""
    bare_text = re.sub(r"[a-zA-Z][a-zA-Z0-9+.-]*:/+", "", str(error))
    # Longest first so that `a.avro` never matches inside `aa.avro`'s message.
    for path in sorted(files, key=len, reverse=True):
        if _bare(path) in bare_text:
            return path
    return None


def _first_line(error: Exception) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    causes = [line for line in lines if line.startswith("Caused by:")]
    return (causes[-1] if causes else lines[0] if lines else repr(error))[:500]


class BronzeIngestor:
    """Ingests the files of one source; holds the table locations derived from the config."""

    def __init__(self, spark: SparkSession, cfg: AppConfig, source: str) -> None:
        self.spark = spark
        self.cfg = cfg
        self.source = source
        self.options = cfg.sources[source]
        self.spec = BRONZE_BY_SOURCE[source]
        self.bronze_path = self.spec.location(cfg)
        self.quarantine_path = BRONZE_QUARANTINE.location(cfg)
        self.log_path = INGEST_FILE_LOG.location(cfg)
        self.landing_dir = cfg.landing_path(source)
        self.app_id = f"adlake-bronze-{source}"
        self._lock = threading.Lock()
        metrics.prepare(BRONZE_JOB, source, self.spec.relative_path, bronze.REJECT_REASONS)
        metrics.record_changed_files(source, 0)

    # -- tables ---------------------------------------------------------------------------
    def ensure_tables(self) -> None:
        storage.ensure_table(self.spark, self.spec, self.bronze_path)
        storage.ensure_table(self.spark, BRONZE_QUARANTINE, self.quarantine_path)
        storage.ensure_table(self.spark, INGEST_FILE_LOG, self.log_path)

    def ensure_landing_dir(self) -> None:
        jvm = self.spark.sparkContext._jvm
        assert jvm is not None
        path = jvm.org.apache.hadoop.fs.Path(self.landing_dir)
        path.getFileSystem(self.spark.sparkContext._jsc.hadoopConfiguration()).mkdirs(path)

    # -- entry points ---------------------------------------------------------------------
    def run_batch(self) -> list[RunResult]:
        """Ingest every landing file not yet in the file log (and repair a crashed run)."""
        self.ensure_tables()
        self.ensure_landing_dir()
        listed = storage.list_landing_files(self.spark, self.landing_dir, self.options.path_glob)
        return self.ingest_files(listed, mode="batch")

    def start_stream(self, trigger: str) -> StreamingQuery:
        """Start a stream that discovers new files and ingests each micro-batch of them."""
        self.ensure_tables()
        self.ensure_landing_dir()
        discovered = (
            self.spark.readStream.format("binaryFile")
            .schema(_BINARY_FILE_SCHEMA)
            .option("pathGlobFilter", self.options.path_glob)
            .option("maxFilesPerTrigger", self.options.max_files_per_trigger)
            .option("maxFileAge", self.cfg.stream.max_file_age)
            .load(self.landing_dir)
            .select("path", "length", F.unix_millis("modificationTime").alias("modified_ms"))
        )

        def per_batch(batch: DataFrame, batch_id: int) -> None:
            log.info("stream %s micro-batch %d", self.source, batch_id)
            listed = [
                storage.LandingFile(r["path"], r["length"], r["modified_ms"])
                for r in batch.collect()
            ]
            self.ingest_files(listed, mode="stream")

        writer = (
            discovered.writeStream.foreachBatch(per_batch)
            .queryName(f"bronze_{self.source}")
            .option("checkpointLocation", self.cfg.checkpoint_path(f"bronze/{self.source}"))
        )
        query: StreamingQuery = with_trigger(writer, trigger).start()
        return query

    # -- the write-ahead protocol ---------------------------------------------------------
    def ingest_files(self, candidates: Iterable[storage.LandingFile], mode: str) -> list[RunResult]:
        """Redo any pending run, then ingest the candidate files not yet logged (or changed).

        The source's file log is read once, in one small job: which files it holds (with
        their size and modification time), which runs are planned without a commit row, the
        last run number and when data last came.
        """
        with self._lock:
            file_log = storage.read_table(self.spark, self.log_path)
            # Logs created before the stats columns lack them until their first new write.
            stats = [
                F.col(c) if c in file_log.columns else F.lit(None).cast("long").alias(c)
                for c in ("file_size", "file_modified_ms")
            ]
            log_rows = (
                file_log.where(F.col("source") == self.source)
                .select(
                    "run_seq",
                    "file_path",
                    "status",
                    "logged_at",
                    "bronze_rows",
                    "quarantined_rows",
                    *stats,
                )
                .collect()
            )
            self._export_last_data(log_rows)
            return self._ingest_new(log_rows, candidates, mode)

    def _export_last_data(self, log_rows: list[Row]) -> None:
        """Seed adlake_source_last_data_timestamp_seconds from the file log, so a run that
        finds nothing new still reports when data last arrived."""
        times = [
            clock.aware(r["logged_at"]).timestamp()
            for r in log_rows
            if r["status"] == COMMITTED and (r["bronze_rows"] or 0) + (r["quarantined_rows"] or 0)
        ]
        if times:
            metrics.record_source_data(self.source, max(times))

    def _ingest_new(
        self, log_rows: list[Row], candidates: Iterable[storage.LandingFile], mode: str
    ) -> list[RunResult]:
        """Redo pending runs, report re-landed files, then plan and execute a run over the
        candidates not yet logged (and the re-landed ones when `reingest_changed`)."""
        committed_runs = {r["run_seq"] for r in log_rows if r["status"] == COMMITTED}
        pending_runs: dict[int, list[Row]] = {}
        for row in log_rows:
            if row["status"] == PLANNED and row["run_seq"] not in committed_runs:
                pending_runs.setdefault(row["run_seq"], []).append(row)
        results: list[RunResult] = []
        for run_seq in sorted(pending_runs):
            rows = pending_runs[run_seq]
            log.warning("%s: redoing run %d left pending by a crash", self.source, run_seq)
            results.append(
                self._execute(
                    run_seq,
                    sorted(r["file_path"] for r in rows),
                    clock.aware(rows[0]["logged_at"]),
                    mode,
                    {r["file_path"]: (r["file_size"], r["file_modified_ms"]) for r in rows},
                )
            )

        listed: dict[str, FileStats] = {f.path: (f.length, f.modification_ms) for f in candidates}
        last_seen: dict[str, FileStats] = {}
        for row in sorted(log_rows, key=lambda r: r["run_seq"]):  # the latest run's stats win
            last_seen[row["file_path"]] = (row["file_size"], row["file_modified_ms"])
        new_files = sorted(set(listed) - set(last_seen))
        # Rows logged before sizes were kept have none: those files cannot be compared.
        changed = sorted(
            path
            for path, seen in last_seen.items()
            if path in listed and seen[0] is not None and seen != listed[path]
        )
        if not new_files and not changed:
            log.info("%s: no new files", self.source)
            return results
        last_run = max((r["run_seq"] for r in log_rows), default=0)
        reingest = changed if self.options.reingest_changed else []
        files = sorted(new_files + reingest)
        self._report_changed(last_run + 1, changed, last_seen, listed)
        runs = [files[i : i + MAX_FILES_PER_RUN] for i in range(0, len(files), MAX_FILES_PER_RUN)]
        for i, run_files in enumerate(runs or [[]]):
            run_seq = last_run + 1 + i
            ingested_at = clock.utc_now(whole_seconds=True)
            reported = changed if i == 0 else []  # `changed` rows ride on the first run's plan
            plan = [(path, PLANNED) for path in run_files] + [(path, CHANGED) for path in reported]
            self._plan(run_seq, plan, mode, ingested_at, listed)
            faults.crash_point(faults.BRONZE_AFTER_PLAN)
            if run_files:
                results.append(
                    self._execute(
                        run_seq, run_files, ingested_at, mode, listed, changed_files=len(reported)
                    )
                )
        return results

    def _report_changed(
        self,
        run_seq: int,
        changed: list[str],
        last_seen: dict[str, FileStats],
        listed: dict[str, FileStats],
    ) -> None:
        metrics.record_changed_files(self.source, len(changed))
        action = (
            f"re-ingesting it in run {run_seq}"
            if self.options.reingest_changed
            else f"not re-ingested (sources.{self.source}.reingest_changed is false)"
        )
        for path in changed:
            (old_size, old_ms), (new_size, new_ms) = last_seen[path], listed[path]
            log.warning(
                "%s: %s was re-landed with different content (size %s -> %s bytes, "
                "modified %s -> %s ms); %s",
                self.source,
                path,
                old_size,
                new_size,
                old_ms,
                new_ms,
                action,
            )

    def _plan(
        self,
        run_seq: int,
        entries: list[tuple[str, str]],
        mode: str,
        logged_at: datetime,
        stats: dict[str, FileStats],
    ) -> None:
        """Append the plan rows (and `changed` rows) of a run and prove the commit is ours.

        Two runs that read the log before either planned compute the same run number; Delta
        keeps the first plan and skips the other's, so a run whose plan is not in the log
        stops here, before any bronze write it could not later account for.
        """
        token = f"{self.app_id}:{run_seq}:{uuid.uuid4().hex}"
        before = storage.latest_version(self.spark, self.log_path)
        self._write_log(run_seq, entries, mode, logged_at, {}, stats, token)
        if not storage.committed_since(self.spark, self.log_path, before, token):
            raise ConcurrentRunError(
                f"{self.source} run {run_seq}: another run of this source planned run "
                f"{run_seq} first; stopped before writing (run one bronze writer per source)"
            )

    def _write_log(
        self,
        run_seq: int,
        entries: list[tuple[str, str]],
        mode: str,
        logged_at: datetime,
        counts: dict[str, tuple[int, int]],
        stats: dict[str, FileStats],
        token: str | None = None,
    ) -> None:
        """Append (path, status) rows of one run: its plan (+ changed rows) or its commit."""
        rows = [
            (
                self.source,
                run_seq,
                path,
                status,
                mode,
                counts[path][0] if path in counts else None,
                counts[path][1] if path in counts else None,
                logged_at,
                *stats.get(path, (None, None)),
            )
            for path, status in entries
        ]
        df = self.spark.createDataFrame(rows, INGEST_FILE_LOG.schema)
        # plan -> version 2k, commit -> 2k+1: both idempotent, strictly increasing per source.
        version = 2 * run_seq + (1 if entries[0][1] == COMMITTED else 0)
        storage.append_idempotent(
            df,
            INGEST_FILE_LOG,
            self.log_path,
            f"adlake-ingest-log-{self.source}",
            version,
            user_metadata=token,
        )

    def _execute(
        self,
        run_seq: int,
        files: list[str],
        ingested_at: datetime,
        mode: str,
        stats: dict[str, FileStats],
        changed_files: int = 0,
    ) -> RunResult:
        """Append a planned run's good records to bronze and its rejects to quarantine.

        One read of the files parses them and writes bronze, counting every record per file
        and reason on the way (`DataFrame.observe`), so nothing is cached or counted twice.
        Only files that had rejects are read again, for the quarantine append. A redo after
        a crash, whose bronze append Delta may already hold, counts in a separate pass.
        """
        started = time.monotonic()
        corrupt: dict[str, str] = {}
        while True:
            readable = [f for f in files if f not in corrupt]
            parsed = self._parse(readable, corrupt).transform(
                bronze.with_ingest_metadata(ingested_at, run_seq)
            )
            try:
                tally = self._append_bronze(parsed, files, run_seq)
                break
            except Exception as exc:
                blamed = _blamed_file(exc, readable)
                if blamed is None:
                    raise CorruptFileNotIdentifiedError(
                        f"{self.source} run {run_seq}: read failed: {_first_line(exc)}"
                    ) from exc
                corrupt[blamed] = _first_line(exc)
                log.warning(
                    "%s run %d: quarantining unreadable file %s", self.source, run_seq, blamed
                )
        faults.crash_point(faults.BRONZE_AFTER_APPEND)
        counts, reasons = tally.counts, dict(tally.reasons)
        good, bad = tally.good, tally.bad
        if bad:
            with_rejects = [f for f in readable if counts[f][1]]
            rejects = (
                self._parse(with_rejects, {f: corrupt[f] for f in files if f in corrupt})
                .transform(bronze.with_ingest_metadata(ingested_at, run_seq))
                .transform(bronze.quarantine_rows(self.source))
            )
            storage.append_idempotent(
                rejects, BRONZE_QUARANTINE, self.quarantine_path, self.app_id, run_seq
            )
        faults.crash_point(faults.BRONZE_AFTER_QUARANTINE)
        faults.crash_point(faults.BRONZE_BEFORE_COMMIT)
        committed = [(path, COMMITTED) for path in files]
        self._write_log(run_seq, committed, mode, ingested_at, counts, stats)
        result = RunResult(
            self.source,
            run_seq,
            mode,
            len(files),
            good,
            bad,
            len(corrupt),
            time.monotonic() - started,
            tuple(sorted(reasons.items())),
            changed_files,
        )
        metrics.record_batch(
            BRONZE_JOB,
            self.source,
            self.spec.relative_path,
            read=good + bad,
            written=good,
            quarantined=reasons,
        )
        if good + bad:
            metrics.record_source_data(self.source, time.time())
        log.info(
            "%s run %d (%s): files=%d bronze_rows=%d quarantined=%d corrupt_files=%d in %.1fs",
            self.source,
            run_seq,
            mode,
            result.files,
            good,
            bad,
            len(corrupt),
            result.seconds,
        )
        return result

    def _append_bronze(self, parsed: DataFrame, files: list[str], run_seq: int) -> bronze.Tally:
        """Append the good records (idempotent on run_seq) and return every record's tally.

        When Delta skips the append because this run's version is already in the table (the
        redo of a run a crash interrupted after its append), nothing was observed, so the
        records are counted in one more pass instead.
        """
        before = storage.latest_version(self.spark, self.bronze_path)
        observation = Observation(f"bronze-{self.source}-{run_seq}-{time.monotonic_ns()}")
        observed = parsed.observe(observation, *bronze.tally_metrics(files))
        storage.append_idempotent(
            observed.transform(bronze.bronze_rows),
            self.spec,
            self.bronze_path,
            self.app_id,
            run_seq,
        )
        if storage.latest_version(self.spark, self.bronze_path) != before:
            return bronze.Tally.from_metrics(files, observation.get)
        log.info(
            "%s run %d: bronze already holds this run; counting its records", self.source, run_seq
        )
        totals = parsed.agg(*bronze.tally_metrics(files)).first()
        assert totals is not None  # a global aggregate always has one row
        return bronze.Tally.from_metrics(files, totals.asDict())

    # -- readers (I/O) ----------------------------------------------------------------------
    def _parse(self, files: list[str], corrupt: dict[str, str]) -> DataFrame:
        """Read and parse the files; unreadable ones become one corrupt_file reject row each."""
        parts: list[DataFrame] = []
        if files:
            if self.source == "impressions":
                parts.append(
                    self._read_text(files, whole=False).transform(
                        bronze.parse_json_lines(schemas.IMPRESSION_FIELDS)
                    )
                )
            elif self.source == "clicks_conversions":
                parts.append(
                    self._read_text(files, whole=True).transform(
                        bronze.parse_csv_files(schemas.CLICK_CONVERSION_FIELDS)
                    )
                )
            else:
                parts.extend(self._read_avro(files, corrupt))
        if corrupt:
            corrupt_df = self.spark.createDataFrame(
                sorted(corrupt.items()), bronze.CORRUPT_FILE_SCHEMA
            )
            parts.append(bronze.corrupt_file_rows(corrupt_df))
        if not parts:
            return self._empty_parsed()
        columns = parts[0].columns
        result = parts[0]
        for part in parts[1:]:
            result = result.unionByName(
                part.select(*[c for c in columns if c in part.columns]), allowMissingColumns=True
            )
        return result

    def _read_text(self, files: list[str], whole: bool) -> DataFrame:
        return self.spark.read.text(files, wholetext=whole).select(
            "value", F.col("_metadata.file_path").alias(schemas.SOURCE_FILE)
        )

    def _read_avro(self, files: list[str], corrupt: dict[str, str]) -> list[DataFrame]:
        """Read Avro files grouped by writer schema, so drifted fields reach `_rescued_data`."""
        groups: dict[str, list[str]] = {}
        for path in files:
            if path in corrupt:
                continue
            try:
                groups.setdefault(self._avro_writer_schema(path), []).append(path)
            except Exception as exc:  # unreadable header: the whole file is corrupt
                # A Py4J error's own first line only names the Java call; its cause says why.
                java = getattr(exc, "java_exception", None)
                why = str(java.toString()) if java is not None else _first_line(exc)
                corrupt[path] = f"cannot read Avro header: {why}"
        return [
            self.spark.read.format("avro")
            .option("avroSchema", writer_schema)
            .load(paths)
            .select("*", F.col("_metadata.file_path").alias(schemas.SOURCE_FILE))
            .transform(bronze.project_bid_requests)
            for writer_schema, paths in sorted(groups.items())
        ]

    def _avro_writer_schema(self, path: str) -> str:
        """The writer schema in the file's header; raises when the file has none (even empty)."""
        jvm = self.spark.sparkContext._jvm
        assert jvm is not None
        conf = self.spark.sparkContext._jsc.hadoopConfiguration()
        source = jvm.org.apache.avro.mapred.FsInput(jvm.org.apache.hadoop.fs.Path(path), conf)
        if source.length() == 0:  # an upload that failed before its first byte
            source.close()
            raise ValueError("empty file (0 bytes), an Avro file starts with a header")
        reader = jvm.org.apache.avro.file.DataFileReader.openReader(
            source, jvm.org.apache.avro.generic.GenericDatumReader()
        )
        try:
            return str(reader.getSchema().toString())
        finally:
            reader.close()

    def _empty_parsed(self) -> DataFrame:
        fields = [
            f
            for f in self.spec.schema.fields
            if f.name not in (schemas.INGESTED_AT, schemas.INGESTION_DATE, schemas.RUN_SEQ)
        ]
        extra = [
            StructField(bronze.RAW_RECORD, StringType()),
            StructField(bronze.REJECT_REASON, StringType()),
            StructField(bronze.REJECT_DETAIL, StringType()),
        ]
        return self.spark.createDataFrame([], StructType(fields + extra))


def run_batch(spark: SparkSession, cfg: AppConfig, sources: Iterable[str]) -> list[RunResult]:
    """Batch-ingest each source in turn."""
    results: list[RunResult] = []
    for source in sources:
        results.extend(BronzeIngestor(spark, cfg, source).run_batch())
    return results


def run_streams(spark: SparkSession, cfg: AppConfig, sources: Iterable[str], trigger: str) -> None:
    """Run one streaming query per source until they finish (available-now) or SIGTERM arrives."""
    stop = stop_on_signals()
    listener = metrics.watch_streams(spark, cfg.metrics)
    queries = [BronzeIngestor(spark, cfg, source).start_stream(trigger) for source in sources]
    wait_for_queries(queries, stop, cfg.stream.stop_timeout_seconds)
    if listener is not None:  # let the final progress events reach the gauges
        listener.wait_for_termination_events(len(queries))
