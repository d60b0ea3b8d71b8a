#!/usr/bin/env bash
# Generate sample data ending now (rounded down to the half hour) into the config's landing
# folder and run the pipeline on it. The terminal shows AdLake's own progress and summary;
# Spark's and the JVM's output goes to <lakehouse>/_logs/run_pipeline-<time>.log.
# Re-running within the same half hour regenerates identical files, so the pipeline adds
# nothing; later, the data ends at the new time and the demo starts over (see below).
set -euo pipefail
cd "$(dirname "$0")/.."
CONFIG="${1:-conf/local.yaml}"
IMPRESSIONS="${2:-20000}"
SEED="${3:-42}"
py=.venv/bin/python
# 21 days: the volume check's 14-day baseline then lies inside the data.
DAYS=21

lakehouse=$($py scripts/jvm_args.py lakehouse --config "$CONFIG")
end=$($py -c 'import sys; sys.path.insert(0, "scripts")
from generate_data import parse_end; print(parse_end("now").isoformat())')
marker="$lakehouse/.adlake-demo"
want="end=$end days=$DAYS impressions=$IMPRESSIONS seed=$SEED"
# Bronze ingests a file name once, so tables built from an earlier demo's data (same file
# names, other content) would stay stale. Start over, but only in a lakehouse this script
# made itself (it holds the marker): nothing else is ever deleted.
if [[ "$lakehouse" != *://* ]] && [ "$lakehouse" != / ] && [ -f "$marker" ] \
  && [ "$(cat "$marker")" != "$want" ]; then
  echo "demo: starting over in $lakehouse (its tables hold an earlier demo's data: $(cat "$marker"))"
  rm -rf "$lakehouse"
elif [[ "$lakehouse" != *://* ]] && [ -d "$lakehouse" ] && [ ! -f "$marker" ] \
  && [ -n "$(ls -A "$lakehouse")" ]; then
  echo "demo: note: $lakehouse already holds tables not made by this demo; remove it for a clean run"
fi

# The one corrupt file is a cut-off copy of a file that also lands whole (nothing lost).
# ERROR: replacing an earlier demo's files (other end time) is expected here, not a warning.
$py scripts/generate_data.py --config "$CONFIG" --impressions "$IMPRESSIONS" --seed "$SEED" \
  --days "$DAYS" --end "$end" --truncated-avro-files 0 --truncated-avro-copies 1 --log-level ERROR
echo "demo: sample data of $DAYS days ending $end in $($py -c 'import sys, yaml
print(yaml.safe_load(open(sys.argv[1]))["paths"]["landing"])' "$CONFIG")"

log_dir="$lakehouse/_logs"
[[ "$lakehouse" == *://* ]] && log_dir="_logs"
mkdir -p "$log_dir"
[[ "$lakehouse" != *://* ]] && echo "$want" > "$marker"
log="$log_dir/run_pipeline-$(date -u +%Y%m%dT%H%M%SZ).log"
echo "demo: Spark and JVM output goes to $log"
# Under spark-submit the Python driver's output (AdLake's logs and summary) is on stdout;
# stderr carries only the JVM's (Spark's log4j, stack traces of expected failures).
rc=0
ADLAKE_CONFIG="$CONFIG" bash scripts/spark_submit.sh jobs/run_pipeline.py 2>>"$log" || rc=$?
if [ "$rc" -ne 0 ]; then
  echo "demo: the pipeline failed (exit $rc); last lines of $log:" >&2
  tail -n 30 "$log" >&2
  exit "$rc"
fi
$py - "$CONFIG" <<'EOF'
"""One line per defect the generator put in on purpose, so the quarantine above is explained."""
import sys
from pathlib import Path

import yaml

from adlake_datagen import read_manifest

landing = Path(yaml.safe_load(open(sys.argv[1], encoding="utf-8"))["paths"]["landing"])
manifest = read_manifest(landing)
for path, entry in sorted(manifest["files"].items()):
    if entry.get("copy_of"):
        print(
            f"demo: {path} is corrupt on purpose: a cut-off copy of {entry['copy_of']}, as from an "
            "upload that was retried; bronze quarantined it as one corrupt_file row and ingested "
            "the complete file, so no bid request is lost"
        )
totals = manifest["totals"]["all"]
malformed = sum(
    sum(t.get("defects", {}).get("malformed", {}).values())
    for source, t in manifest["totals"].items()
    if source != "all"
)
print(
    f"demo: the generator also wrote {malformed} malformed records (quarantined with their "
    f"reason) and {totals['defects']['duplicate']} re-sent duplicates (counted, not stored "
    "twice) on purpose"
)
EOF
