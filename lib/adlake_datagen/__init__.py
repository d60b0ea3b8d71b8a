"""Synthetic landing data for AdLake tests, demos and benchmarks (not production code).

Writes impressions (JSONL), clicks/conversions (CSV), bid requests (Avro) and the creatives
reference with known, counted defects, plus a `_manifest.json` to reconcile against; see
`adlake_datagen.landing` for the layout and the counting contract. Depends on `adlake.schemas`
(the data contract) only; nothing in `adlake` imports this package, and the cluster zip
(scripts/package.sh) does not ship it.
"""

from adlake_datagen.avro_encoding import encode_bid_request
from adlake_datagen.config import (
    DEFAULT_TIMESTAMP_MIX,
    ContractMismatchError,
    DatagenConfig,
    DatagenConfigError,
    parse_timestamp_mix,
)
from adlake_datagen.constants import (
    BID_REQUESTS,
    CLICK,
    CLICKS_CONVERSIONS,
    CONVERSION_TYPES,
    CREATIVES_FILE,
    CSV_MALFORMED_KINDS,
    DRIFT_CSV_COLUMN,
    DRIFT_JSON_FIELD,
    FIRST_ADVERTISER_ID,
    FIRST_AUCTION_ID,
    FIRST_CAMPAIGN_ID,
    FIRST_CREATIVE_ID,
    FIRST_USER_ID,
    IMPRESSIONS,
    JSON_MALFORMED_KINDS,
    MANIFEST_FILE,
    MANIFEST_VERSION,
    REFERENCE,
    RETRY_SUFFIX,
    SEED_BID_REQUESTS,
    SEED_CLICKS_CONVERSIONS,
    SEED_CREATIVES,
    SEED_IMPRESSIONS,
    STAGING_DIR,
    TIMESTAMP_FORMATS,
)
from adlake_datagen.landing import generate_landing, read_manifest

__all__ = [
    "BID_REQUESTS",
    "CLICK",
    "CLICKS_CONVERSIONS",
    "CONVERSION_TYPES",
    "CREATIVES_FILE",
    "CSV_MALFORMED_KINDS",
    "DEFAULT_TIMESTAMP_MIX",
    "DRIFT_CSV_COLUMN",
    "DRIFT_JSON_FIELD",
    "FIRST_ADVERTISER_ID",
    "FIRST_AUCTION_ID",
    "FIRST_CAMPAIGN_ID",
    "FIRST_CREATIVE_ID",
    "FIRST_USER_ID",
    "IMPRESSIONS",
    "JSON_MALFORMED_KINDS",
    "MANIFEST_FILE",
    "MANIFEST_VERSION",
    "REFERENCE",
    "RETRY_SUFFIX",
    "SEED_BID_REQUESTS",
    "SEED_CLICKS_CONVERSIONS",
    "SEED_CREATIVES",
    "SEED_IMPRESSIONS",
    "STAGING_DIR",
    "TIMESTAMP_FORMATS",
    "ContractMismatchError",
    "DatagenConfig",
    "DatagenConfigError",
    "encode_bid_request",
    "generate_landing",
    "parse_timestamp_mix",
    "read_manifest",
]
