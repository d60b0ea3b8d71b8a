#!/usr/bin/env bash
# Generate deterministic sample data into the config's landing folder and run the pipeline on it.
# Re-running regenerates the same files (same seed), so the pipeline adds nothing the second time.
set -euo pipefail
cd "$(dirname "$0")/.."
CONFIG="${1:-conf/local.yaml}"
IMPRESSIONS="${2:-20000}"
SEED="${3:-42}"
.venv/bin/python scripts/generate_data.py --config "$CONFIG" --impressions "$IMPRESSIONS" --seed "$SEED"
ADLAKE_CONFIG="$CONFIG" bash scripts/spark_submit.sh jobs/run_pipeline.py
