"""Bronze parsing: raw landing text/Avro rows -> contract fields, rescued data and reject reasons.

Every transform here is pure (DataFrame -> DataFrame) and returns one row per input record
with `_reject_reason` null for good records; `bronze_rows` / `quarantine_rows` then split
them, so a record is in exactly one of the two tables (`adlake.bronze.tally` counts them).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import datetime
from functools import lru_cache

from pyspark import SparkContext
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import (
    DataType,
    DecimalType,
    IntegralType,
    StringType,
    StructField,
    StructType,
)

from adlake import schemas
from adlake.bronze import csvheader
from adlake.schemas import ID, NUMBER, SourceField

# Reason codes in bronze/quarantine.reason (documented in the README).
MALFORMED_JSON = "malformed_json"
WRONG_TYPE = "wrong_type"
CSV_COLUMN_COUNT = "csv_column_count"
CORRUPT_FILE = "corrupt_file"
REJECT_REASONS = (MALFORMED_JSON, WRONG_TYPE, CSV_COLUMN_COUNT, CORRUPT_FILE)

# The detail of a malformed_json reject whose line gives a key more than once.
REPEATED_KEY = "key given more than once"

REJECT_REASON = "_reject_reason"
REJECT_DETAIL = "_reject_detail"
RAW_RECORD = "_raw_record"

# An id is one scalar token: digits or a string without blanks, quotes or JSON structure.
_ID_PATTERN = r'^[^\s{}\[\]",]+$'
_NUMBER_PATTERN = r"^\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*$"
# Commas outside double quotes (RFC 4180 quoting without embedded newlines).
_CSV_SPLIT = r',(?=(?:[^"]*"[^"]*")*[^"]*$)'
# A UTF-8 byte-order mark: Excel ("CSV UTF-8") and Notepad start files with one. It is not
# JSON whitespace and would glue itself to the first CSV header.
_BOM = "\ufeff"


def _without_bom(text: Column) -> Column:
    # startswith/substr work on Spark's UTF-8 bytes; a regex would decode every line first.
    return F.when(text.startswith(_BOM), text.substr(F.lit(2), F.length(text))).otherwise(text)


def _kind_violation(value: Column, kind: str) -> Column:
    if kind == ID:
        return value.isNotNull() & ~value.rlike(_ID_PATTERN)
    if kind == NUMBER:
        return value.isNotNull() & ~value.rlike(_NUMBER_PATTERN)
    return F.lit(False)


def wrong_type_fields(fields: Sequence[tuple[str, Column, str]]) -> Column:
    """Comma-separated names of fields whose value does not fit its kind, or null when all fit."""
    names = [F.when(_kind_violation(value, kind), F.lit(name)) for name, value, kind in fields]
    joined = F.concat_ws(",", *names) if names else F.lit("")
    return F.when(joined != "", joined)


def _more_than_known(fields_map: Column, known: Sequence[str]) -> Column:
    """Whether the map has entries beyond the contract's keys: a key outside the contract,
    or a key given twice. The lambdas below run interpreted, so only where this holds."""
    known_keys = sum((F.map_contains_key(fields_map, k).cast("int") for k in known), F.lit(0))
    return F.size(fields_map) > known_keys


def _rescued(fields_map: Column, known: Sequence[str], more: Column) -> Column:
    """Non-null entries outside the contract as a JSON object, or null (`more`:
    `_more_than_known` of the map)."""
    known_array = F.array(*[F.lit(k) for k in known])
    # Null values carry nothing to rescue (an empty trailing CSV column, a JSON `null`).
    extra = F.map_filter(fields_map, lambda k, v: ~F.array_contains(known_array, k) & v.isNotNull())
    return F.when(more, F.when(F.size(extra) > 0, F.to_json(extra)))


def _repeated_keys(fields_map: Column, more: Column) -> Column:
    """The keys a JSON object gives more than once (comma-separated), or null.

    `from_json` keeps every entry of a repeated key in the map and a lookup finds the first,
    so the other values would be lost without a trace."""
    keys = F.map_keys(fields_map)
    again = F.filter(keys, lambda k, i: F.array_position(keys, k) != i + 1)
    return F.when(
        more & (F.size(F.array_distinct(keys)) < F.size(keys)),
        F.array_join(F.array_distinct(again), ","),
    )


def _classified(
    values: Sequence[tuple[str, Column, str]],
    rescued: Column,
    malformed: Column,
    reason: str,
    malformed_detail: Column | None = None,
) -> list[Column]:
    """Contract fields (name, value, kind), rescued data and lineage, with each record's
    reject reason: `reason` when malformed, else wrong_type when a value does not fit."""
    wrong = wrong_type_fields(values)
    return [
        *[value.alias(name) for name, value, _ in values],
        rescued.alias(schemas.RESCUED_DATA),
        F.col(schemas.SOURCE_FILE),
        F.col(RAW_RECORD),
        F.when(malformed, F.lit(reason))
        .when(wrong.isNotNull(), F.lit(WRONG_TYPE))
        .alias(REJECT_REASON),
        F.when(malformed, malformed_detail if malformed_detail is not None else F.lit(None))
        .otherwise(wrong)
        .cast("string")
        .alias(REJECT_DETAIL),
    ]


def parse_json_lines(contract: Sequence[SourceField]) -> Callable[[DataFrame], DataFrame]:
    """Parse JSON Lines rows (`value`, `_source_file`); blank lines are not records.

    Every top-level key is read as a string (numbers keep their literal text, nested objects
    their JSON text), so nothing is coerced away; keys outside the contract go to
    `_rescued_data` as a JSON object. An object that gives a key more than once is
    malformed (`REPEATED_KEY` and the keys as its detail).
    """
    key = tuple(contract)

    def transform(lines: DataFrame) -> DataFrame:
        record, parsed, classified = _json_columns(SparkContext._jvm, key)
        return lines.where(record).select(*parsed).select(*classified)

    return transform


# The parsers' column expressions are kept per JVM gateway (`jvm`, a new one builds them
# again) and key: every Spark function call is a Py4J round trip, and a parse's hundreds of
# calls cost 0.5-1 s of driver time per read. They are unresolved and bound to no DataFrame.
@lru_cache(maxsize=256)
def _json_columns(
    jvm: object, contract: tuple[SourceField, ...]
) -> tuple[Column, list[Column], list[Column]]:
    """`parse_json_lines`' line filter and two projections."""
    # Lines carry no position, so a byte-order mark is dropped from the start of any line
    # (a file's first, or one of a file concatenated into it); the raw record keeps it.
    text = _without_bom(F.col("value"))
    names = [f.name for f in contract]
    parsed = [
        F.col("value").alias(RAW_RECORD),
        F.col(schemas.SOURCE_FILE),
        F.from_json(text, "map<string,string>").alias("_map"),
    ]
    fields_map = F.col("_map")
    more = _more_than_known(fields_map, names)
    repeated = _repeated_keys(fields_map, more)
    # A line that repeats a key is malformed: its fields are not read, its text is kept.
    # One projection: Spark computes the repeated conditions once per line.
    fields = F.when(repeated.isNull(), fields_map)
    classified = _classified(
        [(f.name, fields[f.name], f.kind) for f in contract],
        _rescued(fields, names, more),
        fields.isNull(),
        MALFORMED_JSON,
        F.concat(F.lit(f"{REPEATED_KEY}: "), repeated),
    )
    return F.trim(text) != "", parsed, classified


def parse_csv_rows(
    contract: Sequence[SourceField], header: Sequence[str]
) -> Callable[[DataFrame], DataFrame]:
    """Parse the CSV reader's rows (`csvheader.positional(len(header))`, `_source_file`) of
    files sharing one header.

    Columns are named by the header, so files may order columns differently or add new ones
    (rescued). A row whose field count differs from the header's is quarantined with its
    text as read; other rows keep their fields re-joined as a CSV line (`to_csv`, header
    order) as the raw record, which only quarantine rows carry.
    """

    key = (tuple(contract), tuple(header))

    def transform(rows: DataFrame) -> DataFrame:
        records, classified = _csv_columns(SparkContext._jvm, *key)
        return rows.select(*records).select(*classified)

    return transform


@lru_cache(maxsize=256)
def _csv_columns(
    jvm: object, contract: tuple[SourceField, ...], header: tuple[str, ...]
) -> tuple[list[Column], list[Column]]:
    """`parse_csv_rows`' two projections."""
    position = {name: i for i, name in enumerate(header)}
    known = {f.name for f in contract}
    extra = [(name, i) for i, name in enumerate(header) if name not in known]

    def column(i: int) -> Column:
        return F.when(~malformed, F.col(f"_c{i}"))

    malformed = F.col(csvheader.CORRUPT).isNotNull()
    line = F.to_csv(F.struct(*[F.col(f"_c{i}") for i in range(len(header))]), csvheader.OPTIONS)
    values = [
        (f.name, column(position[f.name]) if f.name in position else F.lit(None), f.kind)
        for f in contract
    ]
    # to_json leaves out null fields: a row whose extra columns are all empty rescues none.
    rescued = F.to_json(F.struct(*[column(i).alias(name) for name, i in extra]))
    detail = F.format_string(
        "expected %d fields (header), got %d",
        F.lit(len(header)),
        F.size(F.split(F.col(csvheader.CORRUPT), _CSV_SPLIT, -1)),
    )
    records = [
        F.when(malformed, F.col(csvheader.CORRUPT)).otherwise(line).alias(RAW_RECORD),
        F.col(schemas.SOURCE_FILE),
        *[F.col(f"_c{i}") for i in range(len(header))],
        F.col(csvheader.CORRUPT),
    ]
    classified = _classified(
        [(name, value.cast("string"), kind) for name, value, kind in values],
        F.nullif(rescued, F.lit("{}")) if extra else F.lit(None).cast("string"),
        malformed,
        CSV_COLUMN_COUNT,
        detail,
    )
    return records, classified


def _as_text(column: Column, data_type: DataType) -> Column:
    """Lenient string form of an Avro value: timestamps as ISO-8601 UTC, structures as JSON."""
    type_name = data_type.typeName()
    if type_name in ("timestamp", "timestamp_ntz"):
        return F.date_format(column, "yyyy-MM-dd'T'HH:mm:ss.SSSXXX")
    if isinstance(data_type, StructType) or type_name in ("array", "map"):
        return F.to_json(column)
    return column.cast("string")


def _may_be_wrong(field: StructField | None) -> bool:
    """False when the writer schema already guarantees the kind: an absent field is null, and
    an integer's or decimal's text fits both patterns (a double may be NaN or Infinity)."""
    return field is not None and not isinstance(field.dataType, (IntegralType, DecimalType))


def project_bid_requests(df: DataFrame) -> DataFrame:
    """Project Avro bid requests (any writer schema) onto the bronze contract.

    Driven by the DataFrame's schema, which is the file's own writer schema: contract fields
    missing from it become null, fields it has beyond the contract go to `_rescued_data`.
    """
    first, second = _bid_request_columns(SparkContext._jvm, df.schema.json())
    return df.select(*first).select(*second)


@lru_cache(maxsize=256)
def _bid_request_columns(jvm: object, schema_json: str) -> tuple[list[Column], list[Column]]:
    """`project_bid_requests`' two projections for one writer schema."""
    schema = StructType.fromJson(json.loads(schema_json))
    by_name: dict[str, StructField] = {f.name: f for f in schema.fields}
    projected: list[Column] = []
    rescued: list[Column] = []
    wrong_checks: list[tuple[str, Column, str]] = []

    for group, fields in schemas.BID_REQUEST_FIELDS.items():
        known = {f.name for f in fields}
        if not group:
            for f in fields:
                col = (
                    _as_text(F.col(f.name), by_name[f.name].dataType)
                    if f.name in by_name
                    else F.lit(None)
                )
                projected.append(col.cast("string").alias(f.name))
                if _may_be_wrong(by_name.get(f.name)):
                    wrong_checks.append((f.name, F.col(f.name), f.kind))
            continue
        group_field = by_name.get(group)
        group_type = group_field.dataType if group_field else None
        inner: dict[str, StructField] = (
            {f.name: f for f in group_type.fields} if isinstance(group_type, StructType) else {}
        )
        members = []
        for f in fields:
            if f.name in inner:
                member = _as_text(F.col(group)[f.name], inner[f.name].dataType)
            else:
                member = F.lit(None)
            members.append(member.cast("string").alias(f.name))
            if _may_be_wrong(inner.get(f.name)):
                wrong_checks.append((f"{group}.{f.name}", F.col(group)[f.name], f.kind))
        group_present = F.col(group).isNotNull() if group_field is not None else F.lit(False)
        projected.append(F.when(group_present, F.struct(*members)).alias(group))
        extras = [name for name in inner if name not in known]
        if extras:
            rescued.append(
                F.struct(*[F.col(group)[name].alias(name) for name in extras]).alias(group)
            )
        elif group_field is not None and not isinstance(group_type, StructType):
            rescued.append(F.col(group).alias(group))

    top_known = set(schemas.BID_REQUEST_FIELDS) | {f.name for f in schemas.BID_REQUEST_FIELDS[""]}
    contract_meta = {schemas.SOURCE_FILE, RAW_RECORD}
    rescued.extend(
        F.col(name).alias(name) for name in by_name if name not in top_known | contract_meta
    )
    rescued_json = F.to_json(F.struct(*rescued)) if rescued else F.lit(None).cast("string")
    first = [
        *projected,
        F.when(rescued_json != "{}", rescued_json).alias(schemas.RESCUED_DATA),
        F.col(schemas.SOURCE_FILE),
        F.to_json(F.struct(*[F.col(c) for c in by_name if c not in contract_meta])).alias(
            RAW_RECORD
        ),
    ]
    wrong = wrong_type_fields(wrong_checks)
    second = [
        F.col("*"),
        F.when(wrong.isNotNull(), F.lit(WRONG_TYPE)).alias(REJECT_REASON),
        wrong.alias(REJECT_DETAIL),
    ]
    return first, second


def union_parsed(parts: Sequence[DataFrame]) -> DataFrame:
    """One DataFrame of parsed parts (by name, in the first part's columns; absent ones null)."""
    columns = parts[0].columns
    result = parts[0]
    for part in parts[1:]:
        result = result.unionByName(
            part.select(*[c for c in columns if c in part.columns]), allowMissingColumns=True
        )
    return result


def parsed_schema(bronze_schema: StructType) -> StructType:
    """The schema of parsed rows before ingest metadata: a bronze table's, plus reject fields."""
    fields = [
        f
        for f in bronze_schema.fields
        if f.name not in (schemas.INGESTED_AT, schemas.INGESTION_DATE, schemas.RUN_SEQ)
    ]
    extra = [
        StructField(RAW_RECORD, StringType()),
        StructField(REJECT_REASON, StringType()),
        StructField(REJECT_DETAIL, StringType()),
    ]
    return StructType(fields + extra)


def with_ingest_metadata(ingested_at: datetime, run_seq: int) -> Callable[[DataFrame], DataFrame]:
    """Stamp rows with the run's ingestion time, its date (the partition) and run sequence."""

    def transform(df: DataFrame) -> DataFrame:
        ts = F.lit(ingested_at).cast("timestamp")
        return df.withColumns(
            {
                schemas.INGESTED_AT: ts,
                schemas.RUN_SEQ: F.lit(run_seq).cast("long"),
                schemas.INGESTION_DATE: F.to_date(ts),
            }
        )

    return transform


def bronze_rows(parsed: DataFrame) -> DataFrame:
    """Good records: the contract fields and metadata, rejects left out."""
    return parsed.where(F.col(REJECT_REASON).isNull()).drop(
        REJECT_REASON, REJECT_DETAIL, RAW_RECORD
    )


def quarantine_rows(source: str) -> Callable[[DataFrame], DataFrame]:
    """Rejected records in the bronze/quarantine layout, raw text kept."""

    def transform(parsed: DataFrame) -> DataFrame:
        return parsed.where(F.col(REJECT_REASON).isNotNull()).select(
            F.lit(source).alias("source"),
            F.col(RAW_RECORD).alias("raw_record"),
            F.col(schemas.SOURCE_FILE),
            F.col(REJECT_REASON).alias("reason"),
            F.col(REJECT_DETAIL).alias("detail"),
            F.col(schemas.INGESTED_AT),
            F.col(schemas.RUN_SEQ),
            F.col(schemas.INGESTION_DATE),
        )

    return transform


CORRUPT_FILE_SCHEMA = StructType(
    [
        StructField(schemas.SOURCE_FILE, StringType(), False),
        StructField(REJECT_DETAIL, StringType(), True),
    ]
)


def corrupt_file_rows(files: DataFrame) -> DataFrame:
    """One reject row per unreadable file (`_source_file`, `_reject_detail`)."""
    return files.select(
        F.lit(None).cast("string").alias(RAW_RECORD),
        F.col(schemas.SOURCE_FILE),
        F.lit(CORRUPT_FILE).alias(REJECT_REASON),
        F.col(REJECT_DETAIL),
    )
