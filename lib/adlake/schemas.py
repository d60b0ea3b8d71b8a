"""Field contracts of the three landing sources and the explicit schemas of the bronze tables.

Bronze stores every contract field as a string ("typed leniently"): the case study mixes
integer and string ids and several timestamp formats, and a value that does not fit a
stricter type must never be nulled away before silver can quarantine it with a reason.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from pyspark.sql.types import (
    ArrayType,
    DateType,
    DecimalType,
    DoubleType,
    IntegerType,
    LongType,
    MapType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

# Kinds drive the bronze "wrong_type" check: ids are scalar tokens, numbers are numeric
# literals, timestamps and text are any scalar (their formats are checked in silver).
ID = "id"
NUMBER = "number"
TIMESTAMP = "timestamp"
TEXT = "text"


@dataclass(frozen=True)
class SourceField:
    """One landing field: its name in the file, its kind, and whether the contract requires it."""

    name: str
    kind: str
    required: bool = False


IMPRESSION_FIELDS: tuple[SourceField, ...] = (
    SourceField("impression_id", ID),
    SourceField("creative_id", ID, required=True),
    SourceField("user_id", ID, required=True),
    SourceField("timestamp", TIMESTAMP, required=True),
    SourceField("website", TEXT, required=True),
    SourceField("auction_id", ID),
    SourceField("campaign_id", ID),
    SourceField("cost", NUMBER),
    SourceField("device_type", TEXT),
    SourceField("os", TEXT),
    SourceField("browser", TEXT),
    SourceField("country", TEXT),
    SourceField("region", TEXT),
)

CLICK_CONVERSION_FIELDS: tuple[SourceField, ...] = (
    SourceField("event_id", ID),
    SourceField("timestamp", TIMESTAMP, required=True),
    SourceField("user_id", ID, required=True),
    SourceField("campaign_id", ID, required=True),
    SourceField("creative_id", ID),
    SourceField("conversion_type", TEXT, required=True),
    SourceField("revenue", NUMBER),
)

# Bid requests are nested; bronze keeps the nesting and flattens nothing.
BID_REQUEST_FIELDS: dict[str, tuple[SourceField, ...]] = {
    "": (SourceField("request_id", ID), SourceField("timestamp", TIMESTAMP)),
    "user_info": (SourceField("user_id", ID, required=True), SourceField("location", TEXT)),
    "auction_details": (
        SourceField("auction_id", ID, required=True),
        SourceField("bid_amount", NUMBER, required=True),
    ),
    "ad_targeting": (SourceField("creative_id", ID, required=True), SourceField("website", TEXT)),
    "device": (SourceField("device_type", TEXT), SourceField("os", TEXT)),
}

CREATIVE_COLUMNS: tuple[str, ...] = (
    "creative_id",
    "campaign_id",
    "advertiser_id",
    "creative_name",
    "ad_format",
)

# The Avro contract of bid requests. bid_amount is a CPM price, as in OpenRTB.
# The generator writes with it; bronze uses each file's own writer schema (so drifted
# fields are rescued) and projects onto the fields below.
BID_REQUEST_AVRO_SCHEMA: dict[str, Any] = {
    "type": "record",
    "name": "BidRequest",
    "namespace": "com.advertisex.rtb",
    "fields": [
        {"name": "request_id", "type": ["null", "string"], "default": None},
        {
            "name": "timestamp",
            "type": ["null", {"type": "long", "logicalType": "timestamp-millis"}],
            "default": None,
        },
        {
            "name": "user_info",
            "type": {
                "type": "record",
                "name": "UserInfo",
                "fields": [
                    {"name": "user_id", "type": "long"},
                    {"name": "location", "type": ["null", "string"], "default": None},
                ],
            },
        },
        {
            "name": "auction_details",
            "type": {
                "type": "record",
                "name": "AuctionDetails",
                "fields": [
                    {"name": "auction_id", "type": "long"},
                    {"name": "bid_amount", "type": "double"},
                ],
            },
        },
        {
            "name": "ad_targeting",
            "type": {
                "type": "record",
                "name": "AdTargeting",
                "fields": [
                    {"name": "creative_id", "type": "long"},
                    {"name": "website", "type": ["null", "string"], "default": None},
                ],
            },
        },
        {
            "name": "device",
            "type": [
                "null",
                {
                    "type": "record",
                    "name": "Device",
                    "fields": [
                        {"name": "device_type", "type": ["null", "string"], "default": None},
                        {"name": "os", "type": ["null", "string"], "default": None},
                    ],
                },
            ],
            "default": None,
        },
    ],
}


def bid_request_avro_schema_json() -> str:
    """The bid-request Avro contract as the JSON text Spark's `avroSchema` option takes."""
    return json.dumps(BID_REQUEST_AVRO_SCHEMA)


# Metadata columns every bronze table carries (names are part of the table contract).
INGESTED_AT = "_ingested_at"
INGESTION_DATE = "_ingestion_date"
SOURCE_FILE = "_source_file"
RESCUED_DATA = "_rescued_data"
RUN_SEQ = "_run_seq"

_METADATA_FIELDS: tuple[StructField, ...] = (
    StructField(RESCUED_DATA, StringType(), True),
    StructField(SOURCE_FILE, StringType(), False),
    StructField(INGESTED_AT, TimestampType(), False),
    StructField(RUN_SEQ, LongType(), False),
    StructField(INGESTION_DATE, DateType(), False),
)


def _string_fields(fields: tuple[SourceField, ...]) -> list[StructField]:
    return [StructField(f.name, StringType(), True) for f in fields]


def flat_bronze_schema(fields: tuple[SourceField, ...]) -> StructType:
    """Bronze schema of a flat source: every contract field as a string plus metadata."""
    return StructType(_string_fields(fields) + list(_METADATA_FIELDS))


BRONZE_IMPRESSIONS_SCHEMA = flat_bronze_schema(IMPRESSION_FIELDS)
BRONZE_CLICKS_CONVERSIONS_SCHEMA = flat_bronze_schema(CLICK_CONVERSION_FIELDS)
BRONZE_BID_REQUESTS_SCHEMA = StructType(
    _string_fields(BID_REQUEST_FIELDS[""])
    + [
        StructField(group, StructType(_string_fields(fields)), True)
        for group, fields in BID_REQUEST_FIELDS.items()
        if group
    ]
    + list(_METADATA_FIELDS)
)

BRONZE_QUARANTINE_SCHEMA = StructType(
    [
        StructField("source", StringType(), False),
        StructField("raw_record", StringType(), True),
        StructField(SOURCE_FILE, StringType(), False),
        StructField("reason", StringType(), False),
        StructField("detail", StringType(), True),
        StructField(INGESTED_AT, TimestampType(), False),
        StructField(RUN_SEQ, LongType(), False),
        StructField(INGESTION_DATE, DateType(), False),
    ]
)

INGEST_FILE_LOG_SCHEMA = StructType(
    [
        StructField("source", StringType(), False),
        StructField("run_seq", LongType(), False),
        StructField("file_path", StringType(), False),
        StructField("status", StringType(), False),
        StructField("mode", StringType(), False),
        StructField("bronze_rows", LongType(), True),
        StructField("quarantined_rows", LongType(), True),
        StructField("logged_at", TimestampType(), False),
        # The file as listed when planned (epoch ms as the file system reports it): a later
        # listing that differs means the name was re-landed with new content. Added later:
        # null in rows written before, and added to old tables by the first write (mergeSchema).
        StructField("file_size", LongType(), True),
        StructField("file_modified_ms", LongType(), True),
    ]
)


# ---------------------------------------------------------------------------------- silver
def _fields(spec: str) -> list[StructField]:
    """`name:type` pairs -> nullable fields; keeps the silver schemas readable in one place."""
    types: dict[str, Any] = {
        "string": StringType(),
        "timestamp": TimestampType(),
        "date": DateType(),
        "int": IntegerType(),
        "long": LongType(),
        "money": DecimalType(18, 6),
        "double": DoubleType(),
        "money_sum": DecimalType(38, 6),
    }
    out = []
    for item in spec.split():
        name, type_name = item.split(":")
        out.append(StructField(name, types[type_name], True))
    return out


SILVER_LINEAGE = "_source_file:string _bronze_ingested_at:timestamp _rescued_data:string"
SILVER_EVENT = "event_ts:timestamp event_date:date event_hour:int"

SILVER_IMPRESSIONS_SCHEMA = StructType(
    _fields(
        f"impression_id:string {SILVER_EVENT} user_id:string creative_id:string "
        "campaign_id:string advertiser_id:string website:string auction_id:string cost:money "
        f"device_type:string os:string browser:string country:string region:string {SILVER_LINEAGE}"
    )
)
SILVER_CLICKS_SCHEMA = StructType(
    _fields(
        f"event_id:string {SILVER_EVENT} user_id:string campaign_id:string creative_id:string "
        f"conversion_type:string {SILVER_LINEAGE}"
    )
)
SILVER_CONVERSIONS_SCHEMA = StructType(
    _fields(
        f"event_id:string {SILVER_EVENT} user_id:string campaign_id:string creative_id:string "
        f"conversion_type:string revenue:money {SILVER_LINEAGE}"
    )
)
SILVER_BID_REQUESTS_SCHEMA = StructType(
    _fields(
        f"request_id:string auction_id:string {SILVER_EVENT} user_id:string country:string "
        "bid_amount:money creative_id:string campaign_id:string advertiser_id:string "
        f"website:string device_type:string os:string {SILVER_LINEAGE}"
    )
)
SILVER_CREATIVES_SCHEMA = StructType(
    _fields(
        "creative_id:string campaign_id:string advertiser_id:string creative_name:string "
        "ad_format:string _source_file:string _loaded_at:timestamp"
    )
)
SILVER_QUARANTINE_SCHEMA = StructType(
    [
        StructField("source", StringType(), False),
        StructField("record", StringType(), True),
        StructField("failed_rules", ArrayType(StringType(), True), False),
        StructField("run_id", StringType(), False),
        StructField("batch_id", LongType(), False),
        StructField("quarantined_at", TimestampType(), False),
        StructField(SOURCE_FILE, StringType(), True),
        StructField("_record_key", StringType(), False),
    ]
)
BATCH_AUDIT_SCHEMA = StructType(
    [
        StructField("run_id", StringType(), False),
        StructField("job", StringType(), False),
        StructField("source", StringType(), False),
        StructField("mode", StringType(), False),
        StructField("batch_id", LongType(), False),
        *_fields(
            "rows_in:long rows_written:long quarantined:long duplicates:long late_rows:long "
            "warned_rows:long unknown_countries:long"
        ),
        StructField("rule_counts", MapType(StringType(), LongType()), True),
        *_fields(
            "bronze_run_seq_min:long bronze_run_seq_max:long max_event_ts:timestamp "
            "started_at:timestamp ended_at:timestamp"
        ),
        # Added later (appended, names are a contract): duplicates = their sum for silver
        # rows; null on rows written before they existed and on other jobs' rows.
        *_fields("duplicates_in_batch:long duplicates_existing:long"),
    ]
)


# ------------------------------------------------------------------------------------ gold
MONEY_SUM = DecimalType(38, 6)  # sums of money: wide enough for any table's total
# As stored (every column nullable); tests check each built table against these.
GOLD_CONVERSION_ATTRIBUTION_SCHEMA = StructType(
    _fields(
        "conversion_id:string conversion_ts:timestamp conversion_type:string user_id:string "
        "campaign_id:string revenue:money model:string touch_id:string touch_type:string "
        "touch_ts:timestamp creative_id:string website:string credit:double "
        "attributed_revenue:double click_window_seconds:long view_window_seconds:long "
        "half_life_seconds:long event_date:date"
    )
)
GOLD_CAMPAIGN_DAILY_SCHEMA = StructType(
    _fields(
        "campaign_id:string advertiser_id:string event_date:date impressions:long clicks:long "
        "conversions:long revenue:money_sum spend:money_sum unique_users:long ctr:double "
        "cvr:double cpm:double cpc:double cpa:double roas:double"
    )
)
GOLD_CAMPAIGN_ATTRIBUTION_DAILY_SCHEMA = StructType(
    _fields(
        "campaign_id:string event_date:date model:string attributed_conversions:double "
        "attributed_revenue:double unattributed_conversions:long"
    )
)
GOLD_BID_FUNNEL_DAILY_SCHEMA = StructType(
    _fields(
        "event_date:date country:string website:string bid_requests:long "
        "won_impressions:long win_rate:double avg_bid_cpm:double spend:money_sum"
    )
)
GOLD_MARKOV_TRANSITIONS_SCHEMA = StructType(
    _fields(
        "from_kind:string from_channel:string to_kind:string to_channel:string transitions:long"
    )
)
GOLD_CONVERSION_CHANNELS_SCHEMA = StructType(
    _fields(
        "conversion_key:string conversion_id:string conversion_ts:timestamp "
        "conversion_type:string user_id:string campaign_id:string revenue:money "
        "click_window_seconds:long view_window_seconds:long half_life_seconds:long "
        "channel:string event_date:date"
    )
)


# --------------------------------------------------------------------------------- quality
# One row per check result per run of jobs/quality_monitor.py; column names are a contract
# of the alert rules. observed/threshold are null when nothing could be measured.
DQ_RESULTS_SCHEMA = StructType(
    [
        StructField("run_id", StringType(), False),
        StructField("run_ts", TimestampType(), False),
        StructField("check", StringType(), False),
        StructField("table", StringType(), False),
        StructField("scope", StringType(), False),
        StructField("observed", DoubleType(), True),
        StructField("threshold", DoubleType(), True),
        StructField("status", StringType(), False),
        StructField("detail", StringType(), True),
    ]
)
