"""`adlake.deltalog` on hand-written `_delta_log` directories: versions without a listing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from adlake import deltalog


def _log(table: Path, versions: range, checkpoint: int | None = None) -> str:
    """Commit files for `versions` (each a commitInfo naming its version as userMetadata) and,
    with `checkpoint`, a `_last_checkpoint` pointing at that version."""
    log = table / "_delta_log"
    log.mkdir(parents=True, exist_ok=True)
    for version in versions:
        info = {"commitInfo": {"operation": "WRITE", "userMetadata": f"v{version}"}}
        (log / f"{version:020d}.json").write_text(json.dumps(info) + "\n", encoding="utf-8")
    if checkpoint is not None:
        (log / "_last_checkpoint").write_text(
            json.dumps({"version": checkpoint, "size": 3}), encoding="utf-8"
        )
    return "file:" + str(table)


def _no_listing(monkeypatch: pytest.MonkeyPatch) -> None:
    def listed(*_: object) -> list[int]:
        raise AssertionError("listed _delta_log")

    monkeypatch.setattr(deltalog, "_listed_versions", listed)


def test_the_latest_version_comes_from_the_last_checkpoint_without_a_listing(
    spark: SparkSession, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A long-running stream's file log holds tens of thousands of commit files within
    Delta's 30-day log retention; listing them cost 3 Py4J calls a file (2 s at 10,000) on
    every micro-batch. From `_last_checkpoint` the next commit files are probed instead."""
    young = _log(tmp_path / "young", range(0, 7))
    assert deltalog.latest_version(spark, young) == 6  # no checkpoint yet: listed
    assert deltalog.latest_version(spark, "file:" + str(tmp_path / "none")) is None
    assert not deltalog.is_table(spark, "file:" + str(tmp_path / "none"))

    _no_listing(monkeypatch)
    long = _log(tmp_path / "long", range(0, 2006), checkpoint=2000)
    assert deltalog.latest_version(spark, long) == 2005
    stale = _log(tmp_path / "stale", range(0, 46), checkpoint=30)  # a checkpoint at 40 since
    assert deltalog.latest_version(spark, stale) == 45
    cleaned = _log(tmp_path / "cleaned", range(20, 24), checkpoint=20)  # 0-19 cleaned up
    assert deltalog.latest_version(spark, cleaned) == 23
    assert deltalog.is_table(spark, cleaned)
    # Newest first, down to the oldest commit file still there.
    assert deltalog.last_user_metadata(spark, long) == "v2005"
    assert deltalog.last_write_of(spark, cleaned, "w") is None
    assert deltalog.committed_since(spark, cleaned, 21, "v23")
    assert not deltalog.committed_since(spark, cleaned, 21, "v21")
    assert deltalog.committed_since(spark, cleaned, None, "v20")


def test_a_checkpoint_whose_commit_file_is_gone_falls_back_to_the_listing(
    spark: SparkSession, tmp_path: Path
) -> None:
    odd = _log(tmp_path / "odd", range(12, 15), checkpoint=10)
    assert deltalog.latest_version(spark, odd) == 14
    broken = _log(tmp_path / "broken", range(0, 3))
    (tmp_path / "broken" / "_delta_log" / "_last_checkpoint").write_text("{", encoding="utf-8")
    assert deltalog.latest_version(spark, broken) == 2


def test_jvm_classes_are_looked_up_once_per_jvm(spark: SparkSession, tmp_path: Path) -> None:
    """Each `jvm.org.apache...` lookup is a Py4J round trip per name (~2 ms a class), paid
    per file and per commit read before; the second lookup now makes no JVM call at all."""
    (tmp_path / "note.txt").write_text("héllo\nworld\n", encoding="utf-8")
    jvm = spark.sparkContext._jvm
    assert jvm is not None
    deltalog.jvm_member(spark, "org.apache.hadoop.fs.Path")  # cached from here on

    calls: list[str] = []
    client = jvm._gateway_client
    send = client.send_command

    def counted(command: str, *args: object, **kwargs: object) -> object:
        calls.append(command)
        return send(command, *args, **kwargs)

    client.send_command = counted  # type: ignore[method-assign]
    try:
        path_class = deltalog.path_class(spark)
        cached_calls = len(calls)
        jvm.org.apache.hadoop.fs.Path  # noqa: B018 - a lookup that is not cached, for contrast
    finally:
        client.send_command = send  # type: ignore[method-assign]
    assert cached_calls == 0
    assert len(calls) >= 5  # org, apache, hadoop, fs, Path: one round trip each

    fs, path = deltalog.fs_path(spark, "file:" + str(tmp_path / "note.txt"))
    assert path_class is deltalog.path_class(spark)
    stream = fs.open(path)
    try:
        assert deltalog.read_text(spark, stream) == "héllo\nworld\n"
    finally:
        stream.close()
