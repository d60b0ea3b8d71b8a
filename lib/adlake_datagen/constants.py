"""Names and fixed records of the landing data: source directories and file names, timestamp
format names, defect kinds, the case-study seed records (written verbatim at the top of the first
file of each source) and where generated ids start (above the seed ids).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

IMPRESSIONS: Final = "impressions"
CLICKS_CONVERSIONS: Final = "clicks_conversions"
BID_REQUESTS: Final = "bid_requests"
REFERENCE: Final = "reference"
CREATIVES_FILE: Final = "reference/creatives.csv"
MANIFEST_FILE: Final = "_manifest.json"
# Files are written here and moved into place when complete; ingestion never sees partial
# files (Spark file sources also skip paths starting with "_").
STAGING_DIR: Final = "_datagen_staging"
RETRY_SUFFIX: Final = ".retry.avro"  # name of a truncated copy: part-0000K.retry.avro
MANIFEST_VERSION: Final = 1

TIMESTAMP_FORMATS: Final = ("plain", "iso_offset", "iso_utc", "epoch_ms")
JSON_MALFORMED_KINDS: Final = ("broken_json", "wrong_type")
CSV_MALFORMED_KINDS: Final = ("missing_columns", "extra_columns", "wrong_type")
CONVERSION_TYPES: Final = ("signup", "purchase", "install", "lead")
CLICK: Final = "click"
DRIFT_JSON_FIELD: Final = "placement_id"
DRIFT_CSV_COLUMN: Final = "channel"

# The case-study examples, written verbatim at the top of the first file of each source.
SEED_IMPRESSIONS: Final[tuple[Mapping[str, Any], ...]] = (
    {
        "creative_id": 1,
        "user_id": 101,
        "timestamp": "2023-11-01 10:00:00",
        "website": "example.com",
    },
    {
        "creative_id": 2,
        "user_id": 102,
        "timestamp": "2023-11-01 10:05:00",
        "website": "example.org",
    },
)
# Only the case study's four columns; the other CSV columns are written empty.
SEED_CLICKS_CONVERSIONS: Final[tuple[Mapping[str, str], ...]] = (
    {
        "timestamp": "2023-11-01 10:02:00",
        "user_id": "101",
        "campaign_id": "1",
        "conversion_type": "signup",
    },
    {
        "timestamp": "2023-11-01 10:06:00",
        "user_id": "102",
        "campaign_id": "2",
        "conversion_type": "purchase",
    },
)
SEED_BID_REQUESTS: Final[tuple[Mapping[str, Any], ...]] = (
    {
        "request_id": None,
        "timestamp": None,
        "user_info": {"user_id": 201, "location": "USA"},
        "auction_details": {"auction_id": 1, "bid_amount": 0.1},
        "ad_targeting": {"creative_id": 3, "website": "example.net"},
        "device": None,
    },
    {
        "request_id": None,
        "timestamp": None,
        "user_info": {"user_id": 202, "location": "Canada"},
        "auction_details": {"auction_id": 2, "bid_amount": 0.15},
        "ad_targeting": {"creative_id": 4, "website": "example.org"},
        "device": None,
    },
)
# Creatives the seed records reference; always present in reference/creatives.csv.
SEED_CREATIVES: Final[tuple[Mapping[str, Any], ...]] = (
    {
        "creative_id": 1,
        "campaign_id": 1,
        "advertiser_id": 1,
        "creative_name": "Seed campaign 1 banner",
        "ad_format": "banner",
    },
    {
        "creative_id": 2,
        "campaign_id": 2,
        "advertiser_id": 1,
        "creative_name": "Seed campaign 2 banner",
        "ad_format": "banner",
    },
    {
        "creative_id": 3,
        "campaign_id": 1,
        "advertiser_id": 1,
        "creative_name": "Seed campaign 1 video",
        "ad_format": "video",
    },
    {
        "creative_id": 4,
        "campaign_id": 2,
        "advertiser_id": 1,
        "creative_name": "Seed campaign 2 native",
        "ad_format": "native",
    },
)

# Generated ids start above the seed ids so the case-study examples keep their meaning.
FIRST_ADVERTISER_ID: Final = 2
FIRST_CAMPAIGN_ID: Final = 3
FIRST_CREATIVE_ID: Final = 5
FIRST_AUCTION_ID: Final = 3
FIRST_USER_ID: Final = 1000  # seed users are 101, 102, 201, 202
