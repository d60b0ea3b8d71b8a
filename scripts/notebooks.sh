#!/usr/bin/env bash
# The analysts' notebooks on the config's lakehouse; a sample one is built first (make demo)
# when it has no gold tables yet, so every chart has data.
#   notebooks.sh lab  [CONFIG] [IMPRESSIONS] [SEED]   Jupyter Lab on notebooks/
#   notebooks.sh html [CONFIG] [IMPRESSIONS] [SEED]   run each notebook, write HTML next to the
#                                                     lakehouse's logs: <lakehouse>/_reports/
# The kernels read the config from $ADLAKE_CONFIG (set here to CONFIG's absolute path); the
# notebooks stay without outputs in git (Jupyter saves outputs: clear them before committing).
set -euo pipefail
cd "$(dirname "$0")/.."
ACTION="${1:?usage: notebooks.sh lab|html [CONFIG] [IMPRESSIONS] [SEED]}"
CONFIG="${2:-conf/local.yaml}"
IMPRESSIONS="${3:-20000}"
SEED="${4:-42}"
py=.venv/bin/python

lakehouse=$($py scripts/jvm_args.py lakehouse --config "$CONFIG")
if [[ "$lakehouse" != *://* ]] && [ ! -d "$lakehouse/gold/campaign_daily/_delta_log" ]; then
  echo "notebooks: no gold tables in $lakehouse yet: building the sample lakehouse (make demo)"
  bash scripts/demo.sh "$CONFIG" "$IMPRESSIONS" "$SEED"
fi
ADLAKE_CONFIG="$(realpath "$CONFIG")"
export ADLAKE_CONFIG

case "$ACTION" in
  lab)
    # Root (a container, CI's machine) must opt in; a person's account needs nothing.
    as_root=()
    [ "$(id -u)" = 0 ] && as_root=(--allow-root)
    echo "notebooks: Jupyter Lab on notebooks/ with ADLAKE_CONFIG=$ADLAKE_CONFIG (Ctrl-C stops it)"
    exec .venv/bin/jupyter lab --notebook-dir=notebooks "${as_root[@]}"
    ;;
  html)
    reports="$lakehouse/_reports"
    [[ "$lakehouse" == *://* ]] && reports="_reports"
    mkdir -p "$reports"
    # Spark's own log lines go to the kernel's stderr, not into the pages.
    .venv/bin/jupyter nbconvert --to html --execute --ExecutePreprocessor.timeout=1800 \
      --output-dir "$reports" notebooks/*.ipynb 2>"$reports/nbconvert.log" \
      || { tail -n 40 "$reports/nbconvert.log" >&2; exit 1; }
    for page in "$reports"/*.html; do echo "notebooks: rendered $page"; done
    ;;
  *)
    echo "notebooks.sh: unknown action '$ACTION' (lab or html)" >&2
    exit 2
    ;;
esac
