"""Bronze ingestion runs: landing files -> bronze tables and quarantine, exactly once.

`BronzeIngestor` runs one source in batch or stream mode through the write-ahead file log
(`ops/ingest_file_log`), so crashes are redone and mixed batch/stream runs never ingest a
file twice; `run_batch` / `run_streams` drive several sources. Protocol: docs/bronze.md.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
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

from adlake import clock, deltalog, faults, metrics, schemas, storage
from adlake.bronze import parse, readers
from adlake.bronze.filelog import (
    ConcurrentRunError,
    CorruptFileNotIdentifiedError,
    FileStats,
    RunResult,
    blamed_file,
    file_log_rows,
    file_log_view,
    find_candidates,
    first_line,
    last_data_time,
    log_version,
    log_view_rows,
    pending_runs,
    plan_entries,
    run_result,
    split_runs,
)
from adlake.bronze.tally import Tally, tally_metrics
from adlake.config import AppConfig
from adlake.streams import stop_on_signals, wait_for_queries, with_trigger
from adlake.tables import (
    BRONZE_BY_SOURCE,
    BRONZE_JOB,
    BRONZE_QUARANTINE,
    COMMITTED,
    INGEST_FILE_LOG,
    checkpoint_location,
)

log = logging.getLogger(__name__)

_BINARY_FILE_SCHEMA = StructType(
    [
        StructField("path", StringType(), False),
        StructField("modificationTime", TimestampType(), False),
        StructField("length", LongType(), False),
        StructField("content", BinaryType(), True),
    ]
)


@dataclass
class _LogCopy:
    """This source's file-log rows (`file_log_view`) as of `version`, plus the idempotent
    appends (`log_version`s) this ingestor made after it."""

    rows: list[Row]
    version: int
    own: set[int] = field(default_factory=set)


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
        self.log_app_id = f"adlake-ingest-log-{source}"
        self._lock = threading.Lock()
        self._log: _LogCopy | None = None
        metrics.prepare(BRONZE_JOB, source, self.spec.relative_path, parse.REJECT_REASONS)
        metrics.record_changed_files(source, 0)

    # -- tables ---------------------------------------------------------------------------
    def ensure_tables(self) -> None:
        storage.ensure_table(self.spark, self.spec, self.bronze_path)
        storage.ensure_table(self.spark, BRONZE_QUARANTINE, self.quarantine_path)
        storage.ensure_table(self.spark, INGEST_FILE_LOG, self.log_path)

    def ensure_landing_dir(self) -> None:
        fs, path = deltalog.fs_path(self.spark, self.landing_dir)
        fs.mkdirs(path)

    # -- entry points ---------------------------------------------------------------------
    def run_batch(self) -> list[RunResult]:
        """Ingest every landing file not yet in the file log (and repair a crashed run)."""
        self.prepare()
        return self.ingest_landing()

    def prepare(self) -> None:
        """Create the tables and the landing folder when missing (one source at a time)."""
        self.ensure_tables()
        self.ensure_landing_dir()

    def ingest_landing(self) -> list[RunResult]:
        """List the landing folder and ingest what the file log does not hold yet."""
        listed = storage.list_landing_files(self.spark, self.landing_dir, self.options.path_glob)
        return self.ingest_files(listed, mode="batch")

    def start_stream(self, trigger: str) -> StreamingQuery:
        """Start a stream that discovers new files and ingests each micro-batch of them."""
        self.prepare()
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
            rows = batch.collect()
            listed = [storage.LandingFile(r["path"], r["length"], r["modified_ms"]) for r in rows]
            self.ingest_files(listed, mode="stream")

        writer = (
            discovered.writeStream.foreachBatch(per_batch)
            .queryName(f"bronze_{self.source}")
            .option("checkpointLocation", checkpoint_location(self.cfg, "bronze", self.source))
        )
        query: StreamingQuery = with_trigger(writer, trigger).start()
        return query

    # -- the write-ahead protocol ---------------------------------------------------------
    def ingest_files(self, candidates: Iterable[storage.LandingFile], mode: str) -> list[RunResult]:
        """Redo any pending run, then ingest the candidate files not yet logged (or changed).

        Planning needs the source's file-log rows: which files it holds (with their size and
        modification time), which runs are planned without a commit row, the last run
        number and when data last came (`_log_rows`).
        """
        with self._lock:
            log_rows = self._log_rows()
            self._export_last_data(log_rows)
            try:
                return self._ingest_new(log_rows, candidates, mode)
            except BaseException:
                self._log = None  # a failed run may have written part of what it planned
                raise

    def _log_rows(self) -> list[Row]:
        """The source's file-log rows: read once, in one small job, then kept in memory.

        A stream's next micro-batch reuses the copy, with the rows this ingestor appended
        since, when the commit files after it show no other writer of this source (no Spark
        job), so a micro-batch's cost does not grow with the log. Anything else (another
        writer's run, a rewrite, a cleaned-up commit file) reads the log again.
        """
        latest = deltalog.latest_version(self.spark, self.log_path)
        copy = self._log
        if (
            copy is not None
            and latest is not None
            and not deltalog.rows_changed_by_others(
                self.spark, self.log_path, copy.version, latest, self.log_app_id, copy.own
            )
        ):
            copy.version, copy.own = latest, set()
            return list(copy.rows)
        file_log = storage.read_table(self.spark, self.log_path)
        rows = file_log.transform(file_log_view(self.source)).collect()
        # `latest` was read first: a commit racing the read is checked again next time.
        self._log = _LogCopy(list(rows), latest) if latest is not None else None
        return rows

    def _export_last_data(self, log_rows: list[Row]) -> None:
        """Seed adlake_source_last_data_timestamp_seconds from the file log, so a run that
        finds nothing new still reports when data last arrived."""
        last = last_data_time(log_rows)
        if last is not None:
            metrics.record_source_data(self.source, last)

    def _ingest_new(
        self, log_rows: list[Row], candidates: Iterable[storage.LandingFile], mode: str
    ) -> list[RunResult]:
        """Redo pending runs, report re-landed files, then plan and execute a run over the
        candidates not yet logged (and the re-landed ones when `reingest_changed`)."""
        results: list[RunResult] = []
        for pending in pending_runs(log_rows):
            log.warning("%s: redoing run %d left pending by a crash", self.source, pending.run_seq)
            results.append(
                self._execute(
                    pending.run_seq,
                    pending.files,
                    pending.ingested_at,
                    mode,
                    pending.stats,
                    redo=True,
                )
            )

        listed = {f.path: FileStats(f.length, f.modification_ms) for f in candidates}
        found = find_candidates(log_rows, listed)
        changed = found.changed
        if not found.new_files and not changed:
            log.info("%s: no new files", self.source)
            return results
        reingest = changed if self.options.reingest_changed else []
        files = sorted(found.new_files + reingest)
        self._report_changed(found.last_run + 1, changed, found.last_seen, listed)
        for i, run_files in enumerate(split_runs(files)):
            run_seq = found.last_run + 1 + i
            ingested_at = clock.utc_now(whole_seconds=True)
            reported = changed if i == 0 else []  # `changed` rows ride on the first run's plan
            plan = plan_entries(run_files, reported)
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
        before = deltalog.latest_version(self.spark, self.log_path)
        self._write_log(run_seq, entries, mode, logged_at, {}, stats, token)
        if not deltalog.committed_since(self.spark, self.log_path, before, token):
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
        """Append (path, status) rows of one run: its plan (+ changed rows) or its commit.

        Only the plan takes Delta's idempotent-write check, which decides the run number's
        owner (`_plan`); the owner writes the commit rows once, in a blind append."""
        rows = file_log_rows(self.source, run_seq, entries, mode, logged_at, counts, stats)
        df = self.spark.createDataFrame(rows, INGEST_FILE_LOG.schema)
        version = log_version(run_seq, entries)
        storage.append_idempotent(
            df,
            INGEST_FILE_LOG,
            self.log_path,
            self.log_app_id,
            version,
            user_metadata=token,
            known_new=token is None,
        )
        if self._log is not None:
            self._log.rows.extend(log_view_rows(rows))
            self._log.own.add(version)

    def _execute(
        self,
        run_seq: int,
        files: list[str],
        ingested_at: datetime,
        mode: str,
        stats: dict[str, FileStats],
        changed_files: int = 0,
        redo: bool = False,
    ) -> RunResult:
        """Append a planned run's good records to bronze and its rejects to quarantine.

        One read of the files parses them and writes bronze, counting every record per file
        and reason on the way (`DataFrame.observe`), so nothing is cached or counted twice.
        Only files that had rejects are read again, for the quarantine append.

        A first attempt's appends are blind: no earlier attempt of a run planned just now
        can have written. A `redo` (a run a crash left pending) first asks each table whether
        it holds the run's rows (`_holds_run`) and appends only where it does not; when
        bronze does, the records are counted in a separate pass.
        """
        started = time.monotonic()
        corrupt: dict[str, str] = {}
        while True:
            readable = [f for f in files if f not in corrupt]
            parsed = self._parse(readable, corrupt).transform(
                parse.with_ingest_metadata(ingested_at, run_seq)
            )
            try:
                tally = self._append_bronze(parsed, files, run_seq, redo)
                break
            except Exception as exc:
                blamed = blamed_file(exc, readable)
                if blamed is None:
                    raise CorruptFileNotIdentifiedError(
                        f"{self.source} run {run_seq}: read failed: {first_line(exc)}"
                    ) from exc
                corrupt[blamed] = first_line(exc)
                log.warning(
                    "%s run %d: quarantining unreadable file %s", self.source, run_seq, blamed
                )
        faults.crash_point(faults.BRONZE_AFTER_APPEND)
        if tally.bad and not (redo and self._holds_run(self.quarantine_path, run_seq)):
            rejects = (
                self._parse(
                    tally.with_rejects(readable),
                    {f: corrupt[f] for f in files if f in corrupt},
                    tally.reject_buckets,
                )
                .transform(parse.with_ingest_metadata(ingested_at, run_seq))
                .transform(parse.quarantine_rows(self.source))
            )
            storage.append_idempotent(
                rejects,
                BRONZE_QUARANTINE,
                self.quarantine_path,
                self.app_id,
                run_seq,
                known_new=True,
            )
        faults.crash_point(faults.BRONZE_AFTER_QUARANTINE)
        faults.crash_point(faults.BRONZE_BEFORE_COMMIT)
        committed = [(path, COMMITTED) for path in files]
        self._write_log(run_seq, committed, mode, ingested_at, tally.counts, stats)
        result = run_result(
            self.source,
            run_seq,
            mode,
            len(files),
            tally,
            len(corrupt),
            time.monotonic() - started,
            changed_files,
        )
        metrics.record_batch(
            BRONZE_JOB,
            self.source,
            self.spec.relative_path,
            read=result.records,
            written=result.bronze_rows,
            quarantined=dict(tally.reasons),
        )
        if result.records:
            metrics.record_source_data(self.source, time.time())
        log.info(
            "%s run %d (%s): files=%d bronze_rows=%d quarantined=%d corrupt_files=%d in %.1fs",
            self.source,
            run_seq,
            mode,
            result.files,
            result.bronze_rows,
            result.quarantined_rows,
            result.corrupt_files,
            result.seconds,
        )
        return result

    def _append_bronze(
        self, parsed: DataFrame, files: list[str], run_seq: int, redo: bool
    ) -> Tally:
        """Append the good records and return every record's tally (observed as they go in).

        A redo whose first attempt's append is in bronze already appends nothing, so
        nothing is observed: the records are counted in one more pass instead.
        """
        metrics = tally_metrics(files, line_buckets=self.source in readers.LINE_SOURCES)
        if redo and self._holds_run(self.bronze_path, run_seq):
            log.info("%s run %d: bronze holds this run; counting its records", self.source, run_seq)
            totals = parsed.agg(*metrics).first()
            assert totals is not None  # a global aggregate always has one row
            return Tally.from_metrics(files, totals.asDict())
        observation = Observation(f"bronze-{self.source}-{run_seq}-{time.monotonic_ns()}")
        observed = parsed.observe(observation, *metrics)
        storage.append_idempotent(
            observed.transform(parse.bronze_rows),
            self.spec,
            self.bronze_path,
            self.app_id,
            run_seq,
            known_new=True,
        )
        return Tally.from_metrics(files, observation.get)

    def _holds_run(self, location: str, run_seq: int) -> bool:
        """Whether the table holds rows of this source's run `run_seq` (asked by a redo only):
        one small job, pruned by `_run_seq` statistics. An empty append is safe to redo."""
        rows = storage.read_table(self.spark, location).where(F.col(schemas.RUN_SEQ) == run_seq)
        if location == self.quarantine_path:
            rows = rows.where(F.col("source") == self.source)
        return not rows.isEmpty()

    def _parse(
        self,
        files: list[str],
        corrupt: dict[str, str],
        line_buckets: frozenset[int] | None = None,
    ) -> DataFrame:
        """This source's files read and parsed (`readers.read_parsed`)."""
        return readers.read_parsed(
            self.spark, self.source, self.spec.schema, files, corrupt, line_buckets
        )


def run_batch(spark: SparkSession, cfg: AppConfig, sources: Iterable[str]) -> list[RunResult]:
    """Batch-ingest the sources side by side, one thread each; results in `sources` order.

    A small run is mostly fixed cost (Delta commits, small jobs, driver round trips), so
    the sources overlap instead of queueing, as their streams already do. The tables they
    share (quarantine, file log) take only blind appends, which never conflict; tables are
    created first, one source at a time. A failing source lets the others finish, then
    raises.
    """
    ingestors = [BronzeIngestor(spark, cfg, source) for source in sources]
    for ingestor in ingestors:
        ingestor.prepare()
    if len(ingestors) < 2:
        return [r for ingestor in ingestors for r in ingestor.ingest_landing()]
    with ThreadPoolExecutor(len(ingestors), thread_name_prefix="adlake-bronze") as pool:
        runs = [pool.submit(ingestor.ingest_landing) for ingestor in ingestors]
    return [r for run in runs for r in run.result()]


def run_streams(spark: SparkSession, cfg: AppConfig, sources: Iterable[str], trigger: str) -> None:
    """Run one streaming query per source until they finish (available-now) or SIGTERM arrives."""
    stop = stop_on_signals()
    listener = metrics.watch_streams(spark, cfg.metrics)
    queries = [BronzeIngestor(spark, cfg, source).start_stream(trigger) for source in sources]
    wait_for_queries(queries, stop, cfg.stream.stop_timeout_seconds)
    if listener is not None:  # let the final progress events reach the gauges
        listener.wait_for_termination_events(len(queries))
