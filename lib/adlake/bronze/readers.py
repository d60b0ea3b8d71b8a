"""Landing file readers (I/O): one source's files -> parsed rows, as `bronze.parse` defines them.

JSON Lines are read as text by Spark and parsed with built-in expressions. CSV files are read
by Spark's CSV reader, grouped by header line, and Avro files are grouped by the writer schema
in their headers, so drifted fields reach `_rescued_data` in both.
A file that cannot be read becomes one `corrupt_file` reject row (its path in `corrupt`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import StructType

from adlake import deltalog, schemas
from adlake.bronze import csvheader, parse, tally
from adlake.bronze.filelog import first_line

log = logging.getLogger(__name__)

# Sources read as one record per text line: their quarantine pass can use reject buckets.
LINE_SOURCES = frozenset({"impressions"})

_AVRO_SYNC_SIZE = 16  # bytes of an Avro container file's sync marker
_MAX_HEADER_BYTES = 1 << 20  # a longer header line is read cut short
T = TypeVar("T")


class TruncatedAvroFileError(ValueError):
    """An Avro file whose end is not a block boundary: quarantined as corrupt, not read."""


def read_parsed(
    spark: SparkSession,
    source: str,
    bronze_schema: StructType,
    files: list[str],
    corrupt: dict[str, str],
    line_buckets: frozenset[int] | None = None,
) -> DataFrame:
    """Read and parse the files; unreadable ones become one corrupt_file reject row each.

    Avro files found unreadable here are added to `corrupt`. `line_buckets` (JSON Lines only)
    limits the parse to lines in those hash buckets: the quarantine pass, after the bronze
    pass collected its rejects' buckets.
    """
    parts: list[DataFrame] = []
    if files:
        if source in LINE_SOURCES:
            lines = _read_text(spark, files)
            if line_buckets is not None:
                buckets = spark.createDataFrame(
                    [(b,) for b in sorted(line_buckets)], f"{tally.BUCKET} int"
                )
                lines = lines.transform(tally.lines_in_buckets(buckets))
            parts.append(lines.transform(parse.parse_json_lines(schemas.IMPRESSION_FIELDS)))
        elif source == "clicks_conversions":
            parts.extend(_read_csv(spark, source, files, corrupt))
        else:
            parts.extend(_read_avro(spark, source, files, corrupt))
    if corrupt:
        corrupt_df = spark.createDataFrame(sorted(corrupt.items()), parse.CORRUPT_FILE_SCHEMA)
        parts.append(parse.corrupt_file_rows(corrupt_df))
    if not parts:
        return spark.createDataFrame([], parse.parsed_schema(bronze_schema))
    return parse.union_parsed(parts)


def _read_text(spark: SparkSession, files: list[str]) -> DataFrame:
    return spark.read.text(files).select(
        "value", F.col("_metadata.file_path").alias(schemas.SOURCE_FILE)
    )


def _read_csv(
    spark: SparkSession, source: str, files: list[str], corrupt: dict[str, str]
) -> list[DataFrame]:
    """Read CSV files with Spark's CSV reader, grouped by header line.

    Each group is one read whose columns are named by that header (`parse.parse_csv_rows`),
    so the reader splits large files across tasks. A file without a header line holds no
    records; one whose header cannot be read, or names a column twice, is corrupt.
    """
    groups: dict[tuple[str, ...], list[str]] = {}
    jvm = _Jvm(spark)
    readable = [f for f in files if f not in corrupt]
    for path, found in _each_file(jvm.csv_header_line, readable):
        if isinstance(found, Exception):  # an unreadable file (a broken compressed upload)
            corrupt[path] = f"cannot read CSV header: {_why(found)}"
        elif found is None:
            continue  # no header: no records
        else:
            tokens = tuple(csvheader.tokens(found))
            twice = csvheader.duplicates(csvheader.names(tokens))
            if not twice:
                groups.setdefault(tokens, []).append(path)
                continue
            corrupt[path] = f"CSV header names a column more than once: {', '.join(twice)}"
        log.warning("%s: quarantining unreadable file %s (%s)", source, path, corrupt[path])
    return [
        spark.read.schema(csvheader.read_schema(tokens))
        .options(
            header=True,
            mode="PERMISSIVE",
            columnNameOfCorruptRecord=csvheader.CORRUPT,
            **csvheader.OPTIONS,
        )
        .csv(paths)
        .select("*", F.col("_metadata.file_path"))
        .toDF(*csvheader.positional(len(tokens)), schemas.SOURCE_FILE)
        .transform(parse.parse_csv_rows(schemas.CLICK_CONVERSION_FIELDS, csvheader.names(tokens)))
        for tokens, paths in sorted(groups.items())
    ]


def _read_avro(
    spark: SparkSession, source: str, files: list[str], corrupt: dict[str, str]
) -> list[DataFrame]:
    """Read Avro files grouped by writer schema, so drifted fields reach `_rescued_data`.

    A file found unreadable from its header or its tail is one warning line, as a file a
    Spark read fails on is.
    """
    groups: dict[str, list[str]] = {}
    jvm = _Jvm(spark)
    readable = [f for f in files if f not in corrupt]
    for path, found in _each_file(jvm.avro_writer_schema, readable):
        if isinstance(found, TruncatedAvroFileError):
            corrupt[path] = str(found)
        elif isinstance(found, Exception):  # unreadable header: the whole file is corrupt
            corrupt[path] = f"cannot read Avro header: {_why(found)}"
        else:
            groups.setdefault(found, []).append(path)
            continue
        log.warning("%s: quarantining unreadable file %s (%s)", source, path, corrupt[path])
    return [
        spark.read.format("avro")
        .option("avroSchema", writer_schema)
        .load(paths)
        .select("*", F.col("_metadata.file_path").alias(schemas.SOURCE_FILE))
        .transform(parse.project_bid_requests)
        for writer_schema, paths in sorted(groups.items())
    ]


def _why(exc: Exception) -> str:
    """A Py4J error's own first line only names the Java call; its cause says why."""
    java = getattr(exc, "java_exception", None)
    return str(java.toString()) if java is not None else first_line(exc)


def _each_file(read: Callable[[str], T], paths: list[str]) -> list[tuple[str, T | Exception]]:
    """`read` of each path, or the exception it raised, in the paths' order."""

    def attempt(path: str) -> T | Exception:
        try:
            return read(path)
        except Exception as exc:
            return exc

    return [(path, attempt(path)) for path in paths]


class _Jvm:
    """The JVM classes the per-file header reads call, from `deltalog.jvm_member`: looked up
    once per JVM, not per file (per file, 1,000 CSV headers took 10-13 s instead of
    1.1-1.7 s). Python threads gained nothing more on local files: the Py4J round trips are
    CPU-bound on two cores."""

    def __init__(self, spark: SparkSession) -> None:
        def member(name: str) -> Any:
            return deltalog.jvm_member(spark, name)

        self.conf = spark.sparkContext._jsc.hadoopConfiguration()
        self.path = deltalog.path_class(spark)
        self.codecs = member("org.apache.hadoop.io.compress.CompressionCodecFactory")(self.conf)
        self.line_reader = member("org.apache.hadoop.util.LineReader")
        self.text = member("org.apache.hadoop.io.Text")
        self.fs_input = member("org.apache.avro.mapred.FsInput")
        self.open_avro = member("org.apache.avro.file.DataFileReader.openReader")
        self.datum_reader = member("org.apache.avro.generic.GenericDatumReader")
        self.read_exactly = member("org.apache.commons.io.IOUtils.toByteArray")  # -> bytes

    def csv_header_line(self, path: str) -> str | None:
        """The file's header: its first non-blank line (decompressed by the file's codec, as
        Spark's reader does), or None when it has none. A few kilobytes read per file."""
        hadoop_path = self.path(path)
        raw = hadoop_path.getFileSystem(self.conf).open(hadoop_path)
        try:
            codec = self.codecs.getCodec(hadoop_path)
            stream = raw if codec is None else codec.createInputStream(raw)
            reader = self.line_reader(stream)
            text = self.text()
            while reader.readLine(text, _MAX_HEADER_BYTES) > 0:
                line = str(text.toString())
                if not csvheader.is_blank(line):
                    return line
            return None
        finally:
            raw.close()

    def avro_writer_schema(self, path: str) -> str:
        """The writer schema in the file's header; raises when the file has none (even
        empty) or is cut short.

        A complete container file ends with the 16-byte sync marker its header ends with
        (every block is followed by it), so two small reads find a truncated upload here
        instead of a Spark read failing on it and every file being read again.
        """
        hadoop_path = self.path(path)
        source = self.fs_input(hadoop_path, self.conf)
        length = source.length()
        if length == 0:  # an upload that failed before its first byte
            source.close()
            raise ValueError("empty file (0 bytes), an Avro file starts with a header")
        reader = self.open_avro(source, self.datum_reader())
        try:
            schema = str(reader.getSchema().toString())
            header_end = int(reader.previousSync())  # where the first block starts
        finally:
            reader.close()
        if length > header_end:
            stream = hadoop_path.getFileSystem(self.conf).open(hadoop_path)
            try:
                stream.seek(header_end - _AVRO_SYNC_SIZE)
                marker = bytes(self.read_exactly(stream, _AVRO_SYNC_SIZE))
                stream.seek(length - _AVRO_SYNC_SIZE)
                tail = bytes(self.read_exactly(stream, _AVRO_SYNC_SIZE))
            finally:
                stream.close()
            if marker != tail:
                raise TruncatedAvroFileError(
                    "truncated Avro file: it does not end with the sync marker of its header "
                    "(an upload cut short)"
                )
        return schema
