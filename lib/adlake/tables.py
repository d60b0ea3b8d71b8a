"""Every Delta table AdLake writes, declared once: location, schema, keys and partitioning."""

from __future__ import annotations

from dataclasses import dataclass

from pyspark.sql.types import StructType

from adlake import schemas


@dataclass(frozen=True)
class TableSpec:
    """A path-based Delta table; `relative_path` is under `paths.lakehouse` and is a contract."""

    name: str
    relative_path: str
    schema: StructType
    partition_by: tuple[str, ...] = ()
    keys: tuple[str, ...] = ()
    description: str = ""


BRONZE_IMPRESSIONS = TableSpec(
    name="bronze.impressions",
    relative_path="bronze/impressions",
    schema=schemas.BRONZE_IMPRESSIONS_SCHEMA,
    partition_by=(schemas.INGESTION_DATE,),
    description="Raw ad impressions from landing/impressions/*.jsonl[.gz], fields as strings.",
)
BRONZE_CLICKS_CONVERSIONS = TableSpec(
    name="bronze.clicks_conversions",
    relative_path="bronze/clicks_conversions",
    schema=schemas.BRONZE_CLICKS_CONVERSIONS_SCHEMA,
    partition_by=(schemas.INGESTION_DATE,),
    description="Raw click and conversion rows from landing/clicks_conversions/*.csv.",
)
BRONZE_BID_REQUESTS = TableSpec(
    name="bronze.bid_requests",
    relative_path="bronze/bid_requests",
    schema=schemas.BRONZE_BID_REQUESTS_SCHEMA,
    partition_by=(schemas.INGESTION_DATE,),
    description="Raw RTB bid requests from landing/bid_requests/*.avro, nesting kept.",
)
BRONZE_QUARANTINE = TableSpec(
    name="bronze.quarantine",
    relative_path="bronze/quarantine",
    schema=schemas.BRONZE_QUARANTINE_SCHEMA,
    partition_by=(schemas.INGESTION_DATE,),
    description="Records and files bronze could not parse, with a reason; nothing is dropped.",
)
INGEST_FILE_LOG = TableSpec(
    name="ops.ingest_file_log",
    relative_path="ops/ingest_file_log",
    schema=schemas.INGEST_FILE_LOG_SCHEMA,
    keys=("source", "file_path"),
    description="Write-ahead log of landing files: planned, then committed with row counts.",
)

BRONZE_BY_SOURCE: dict[str, TableSpec] = {
    "impressions": BRONZE_IMPRESSIONS,
    "clicks_conversions": BRONZE_CLICKS_CONVERSIONS,
    "bid_requests": BRONZE_BID_REQUESTS,
}

ALL_TABLES: tuple[TableSpec, ...] = (
    BRONZE_IMPRESSIONS,
    BRONZE_CLICKS_CONVERSIONS,
    BRONZE_BID_REQUESTS,
    BRONZE_QUARANTINE,
    INGEST_FILE_LOG,
)
