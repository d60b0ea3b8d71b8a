"""Reading a Delta table's transaction log directly: existence, versions, commit metadata.

The commit files in `_delta_log/` are Delta's documented protocol; reading one small JSON
file through the Hadoop FileSystem costs milliseconds where a DeltaTable snapshot costs
Spark jobs. Writers live in `adlake.storage`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import Any
from urllib.parse import unquote

from pyspark.sql import SparkSession

# Locations known to exist in this process; tables are never dropped by AdLake jobs.
known_tables: set[str] = set()


_COMMIT_FILE = re.compile(r"^(\d{20})\.json$")


@dataclass(frozen=True)
class WriteTag:
    """Names one write of one batch, to recognise its commit when the batch is replayed.

    Stored as the commit's userMetadata. `writer` is stable across restarts (e.g. built from
    a stream's query id, which its checkpoint keeps) and writes its batches in `batch` order.
    """

    writer: str
    batch: int

    def user_metadata(self) -> str:
        return json.dumps({"adlake_writer": self.writer, "batch": self.batch}, sort_keys=True)

    @staticmethod
    def parse(user_metadata: object) -> WriteTag | None:
        """The tag a commit's userMetadata carries, None when it carries none."""
        if not isinstance(user_metadata, str) or not user_metadata.startswith("{"):
            return None
        try:
            data = json.loads(user_metadata)
        except ValueError:
            return None
        if not isinstance(data, dict):
            return None
        writer, batch = data.get("adlake_writer"), data.get("batch")
        if not isinstance(writer, str) or not isinstance(batch, int):
            return None
        return WriteTag(writer, batch)


def jvm_member(spark: SparkSession, dotted: str) -> Any:
    """A JVM class (or static member) by its dotted name, looked up once per JVM gateway:
    each `jvm.org.apache...` step is a Py4J round trip (~2 ms a class)."""
    jvm = spark.sparkContext._jvm
    assert jvm is not None
    return _jvm_member(jvm, dotted)


@lru_cache(maxsize=32)
def _jvm_member(jvm: Any, dotted: str) -> Any:
    member = jvm
    for name in dotted.split("."):
        member = getattr(member, name)
    return member


def path_class(spark: SparkSession) -> Any:
    """Hadoop's `Path` class."""
    return jvm_member(spark, "org.apache.hadoop.fs.Path")


def read_text(spark: SparkSession, stream: Any) -> str:
    """A Hadoop input stream's whole content as UTF-8 text (the stream is left open)."""
    return str(jvm_member(spark, "org.apache.commons.io.IOUtils.toString")(stream, "UTF-8"))


def fs_path(spark: SparkSession, location: str) -> tuple[Any, Any]:
    """(Hadoop FileSystem, Path) for a location, through the session's Hadoop configuration."""
    path = path_class(spark)(location)
    return path.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration()), path


def all_exist(spark: SparkSession, paths: Iterable[str]) -> bool:
    """True when every path exists (one FileSystem call each, no Spark job)."""
    for path in paths:
        fs, hadoop_path = fs_path(spark, path)
        if not fs.exists(hadoop_path):
            return False
    return True


class _Log:
    """A table's `_delta_log/` through the Hadoop FileSystem: one FileSystem call per probe."""

    def __init__(self, spark: SparkSession, location: str) -> None:
        self._spark = spark
        self._path = path_class(spark)
        self.dir = self._path(location.rstrip("/") + "/_delta_log")
        self.fs = self.dir.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())

    def has_commit(self, version: int) -> bool:
        return bool(self.fs.exists(self._path(self.dir, f"{version:020d}.json")))

    def checkpoint_version(self) -> int | None:
        """The version `_last_checkpoint` names; None when it is missing or unreadable."""
        path = self._path(self.dir, "_last_checkpoint")
        if not self.fs.exists(path):
            return None
        stream = self.fs.open(path)
        try:
            text = read_text(self._spark, stream)
        finally:
            stream.close()
        try:
            version = json.loads(text).get("version")
        except (ValueError, AttributeError):
            return None
        return version if isinstance(version, int) else None


def _listed_versions(log: _Log) -> list[int]:
    """Versions of every commit file in `_delta_log/`: three Py4J calls a file."""
    if not log.fs.exists(log.dir):
        return []
    versions = []
    for status in log.fs.listStatus(log.dir):
        match = _COMMIT_FILE.match(str(status.getPath().getName()))
        if match:
            versions.append(int(match.group(1)))
    return sorted(versions)


def _latest(log: _Log) -> int | None:
    start = log.checkpoint_version()
    if start is None or not log.has_commit(start):
        listed = _listed_versions(log)
        return listed[-1] if listed else None
    while log.has_commit(start + 1):
        start += 1
    return start


def latest_version(spark: SparkSession, location: str) -> int | None:
    """Latest committed version of a Delta table, None when there is no table.

    From the version `_last_checkpoint` names (Delta writes a checkpoint every 10 commits),
    the next commit files are probed: a few FileSystem calls however long the log. Only a
    table without a checkpoint yet has its `_delta_log/` listed; a listing costs three Py4J
    calls a file (2 s at 10,000 files, a day of a stream's file log within Delta's 30-day
    log retention).
    """
    return _latest(_Log(spark, location))


def versions_newest_first(spark: SparkSession, location: str) -> Iterator[int]:
    """The table's commit versions from the latest down to the oldest commit file still
    there (versions are consecutive; a log cleanup removes the oldest)."""
    log = _Log(spark, location)
    version = _latest(log)
    while version is not None and version >= 0 and log.has_commit(version):
        yield version
        version -= 1


def is_table(spark: SparkSession, location: str) -> bool:
    """True when a Delta table exists at `location` (a few FileSystem calls, no Spark job)."""
    return location in known_tables or latest_version(spark, location) is not None


def last_user_metadata(spark: SparkSession, location: str) -> str | None:
    """userMetadata of the table's latest commit (None: no table or none recorded)."""
    version = latest_version(spark, location)
    return None if version is None else commit_info(spark, location, version).get("userMetadata")


def commit_info(spark: SparkSession, location: str, version: int) -> dict[str, Any]:
    """The `commitInfo` action of one commit file ({} when the commit has none or is gone)."""
    for action in _commit_actions(spark, location, version) or []:
        if "commitInfo" in action:
            info: dict[str, Any] = action["commitInfo"]
            return info
    return {}


def committed_since(
    spark: SparkSession, location: str, after_version: int | None, user_metadata: str
) -> bool:
    """True when a commit after `after_version` carries `user_metadata` (commit files only).

    An idempotent append that Delta skipped, because its (app id, version) was already
    committed by an earlier attempt or by another writer, leaves no such commit.
    """
    for version in versions_newest_first(spark, location):
        if after_version is not None and version <= after_version:
            return False
        if commit_info(spark, location, version).get("userMetadata") == user_metadata:
            return True
    return False


def table_version(spark: SparkSession, location: str) -> int | None:
    """Latest committed version of a Delta table, None when there is no table."""
    return latest_version(spark, location)


_MAINTENANCE_OPERATIONS = ("OPTIMIZE", "VACUUM START", "VACUUM END")


def last_write_partial(spark: SparkSession, location: str) -> bool:
    """True when the latest data write of a derived table replaced only some rows (replaceWhere)."""
    for version in versions_newest_first(spark, location):
        info = commit_info(spark, location, version)
        if info.get("operation") in _MAINTENANCE_OPERATIONS:
            continue
        predicate = (info.get("operationParameters") or {}).get("predicate")
        return predicate not in (None, "", "[]")
    return False


def derived_commit(spark: SparkSession, location: str) -> tuple[str | None, int]:
    """(userMetadata, numOutputRows) of the latest data write of a derived table.

    Maintenance commits (OPTIMIZE, VACUUM) are skipped: they change files, not content.
    (None, 0) when there is no table.
    """
    for version in versions_newest_first(spark, location):
        info = commit_info(spark, location, version)
        if info.get("operation") in _MAINTENANCE_OPERATIONS:
            continue
        metrics = info.get("operationMetrics") or {}
        return info.get("userMetadata"), int(metrics.get("numOutputRows", 0))
    return None, 0


@dataclass(frozen=True)
class AddedFile:
    """A data file a commit added with dataChange = true: its full path and partition values."""

    path: str
    partition_values: dict[str, str | None]


def _commit_actions(
    spark: SparkSession, location: str, version: int
) -> list[dict[str, Any]] | None:
    """The actions of one commit file, None when the file is gone (log cleaned up)."""
    fs, path = fs_path(spark, f"{location.rstrip('/')}/_delta_log/{version:020d}.json")
    if not fs.exists(path):
        return None
    stream = fs.open(path)
    try:
        text = read_text(spark, stream)
    finally:
        stream.close()
    return [json.loads(line) for line in text.splitlines() if line.strip()]


@dataclass(frozen=True)
class Appends:
    """What commits that only appended rows did: the files they added, and whether OPTIMIZE
    also moved rows into other files (a remove with dataChange = false) among them."""

    files: list[AddedFile]
    moved: bool


def appended_files(spark: SparkSession, location: str, after: int, upto: int) -> Appends | None:
    """Files added by the commits (after, upto] when those commits only appended rows.

    Read from the commit files, no Spark job. None when the change is not a pure append,
    so the caller must recompute from scratch: a commit file is gone, a commit removed or
    rewrote rows (a remove with dataChange), changed the schema or properties (metaData), or
    added a file with a deletion vector. OPTIMIZE's adds and removes (dataChange = false)
    move rows without changing them: skipped, and reported as `moved`, since the rows of
    version `after` are then no longer the current rows outside the appended files.
    """
    added: list[AddedFile] = []
    moved = False
    base = location.rstrip("/")
    for version in range(after + 1, upto + 1):
        actions = _commit_actions(spark, location, version)
        if actions is None:
            return None
        for action in actions:
            if "metaData" in action:
                return None
            if "remove" in action:
                if action["remove"].get("dataChange", True):
                    return None
                moved = True
            add = action.get("add")
            if add is None or not add.get("dataChange", True):
                continue
            if add.get("deletionVector"):
                return None
            relative = unquote(str(add["path"]))
            full = (
                relative
                if re.match(r"^[a-zA-Z][a-zA-Z0-9+.\-]*:", relative)
                else (f"{base}/{relative}")
            )
            added.append(AddedFile(full, dict(add.get("partitionValues") or {})))
    return Appends(added, moved)


def last_write_of(spark: SparkSession, location: str, writer: str) -> int | None:
    """The version (batch) of `writer`'s newest write to the table: its Delta `txn` action,
    or the `WriteTag` of its blind append. None when no commit file still there is the
    writer's. Commit files only, no Spark job, newest first: it reads the commits made since
    the writer's last one (all of them for a writer that never wrote)."""
    for version in versions_newest_first(spark, location):
        for action in _commit_actions(spark, location, version) or []:
            written = _version_written(action, writer)
            if written is not None:
                return written
    return None


def _version_written(action: dict[str, Any], writer: str) -> int | None:
    """The version `writer` wrote, if this action says so: Delta's `txn` action of a checked
    append, or the `WriteTag` in the commitInfo of a blind one."""
    txn = action.get("txn")
    if txn is not None and txn.get("appId") == writer:
        return int(txn["version"])
    tag = WriteTag.parse((action.get("commitInfo") or {}).get("userMetadata"))
    return tag.batch if tag is not None and tag.writer == writer else None


def rows_changed_by_others(
    spark: SparkSession, location: str, after: int, upto: int, app_id: str, own: set[int]
) -> bool:
    """True unless the commits (after, upto] leave `app_id`'s rows as the caller knows them.

    They do when every commit file is still there, none removed or rewrote rows (a remove
    with dataChange; OPTIMIZE's are not), and every write of `app_id` among them (its `txn`
    action, or its `WriteTag` for a blind append) is one of the caller's own versions `own`.
    Commit files only, no Spark job: what lets a long-running writer keep its rows of a
    shared table in memory.
    """
    for version in range(after + 1, upto + 1):
        actions = _commit_actions(spark, location, version)
        if actions is None:
            return True
        for action in actions:
            if "remove" in action and action["remove"].get("dataChange", True):
                return True
            written = _version_written(action, app_id)
            if written is not None and written not in own:
                return True
    return False
