#!/usr/bin/env bash
# spark-submit a job with the JVM packages and master from the config, so the command line and
# the session factory can never disagree:  scripts/spark_submit.sh jobs/bronze_ingest.py --source all
# After scripts/setup.sh the packages are local jars in the venv's spark-defaults.conf, which
# spark-submit reads itself; only without them are they passed as --packages (Ivy resolution).
# Extra spark-submit options go in SPARK_SUBMIT_OPTS_EXTRA (e.g. "--master spark://host:7077").
set -euo pipefail
cd "$(dirname "$0")/.."
CONFIG="${ADLAKE_CONFIG:-conf/local.yaml}"
job="$1"; shift
py="$PWD/.venv/bin/python"
# pip's pyspark ships spark-submit without SPARK_HOME; point both at the project's venv.
export SPARK_HOME="${SPARK_HOME:-$($py -c 'import os, pyspark; print(os.path.dirname(pyspark.__file__))')}"
export PYSPARK_PYTHON="${PYSPARK_PYTHON:-$py}"
export PYSPARK_DRIVER_PYTHON="${PYSPARK_DRIVER_PYTHON:-$py}"
inputs=$($py scripts/jvm_args.py submit-inputs --config "$CONFIG")
# One line each; $(...) drops trailing empty lines, so the last reads may find none.
args=()
{ read -r packages || true; read -r excludes || true; read -r master || true
  read -r memory || true; read -r java_options || true
  read -r sharing_classpath || true; read -r sharing_option || true; } <<< "$inputs"
# Set-up's class data sharing archive (scripts/class_archive.py): its classpath goes first.
# Not for a driver that cluster deploy mode starts on another machine, which has no such file.
extra=" ${SPARK_SUBMIT_OPTS_EXTRA:-} "
if [[ "$extra" == *" --deploy-mode cluster "* || "$extra" == *" --deploy-mode=cluster "* ]]; then
  sharing_classpath=""
fi
if [ -n "$sharing_classpath" ]; then
  args+=(--driver-class-path "$sharing_classpath")
  java_options="${java_options:+$java_options }$sharing_option"
fi
if [ -n "$packages" ]; then
  args+=(--packages "$packages")
  [ -n "$excludes" ] && args+=(--exclude-packages "$excludes")
fi
[ -n "$master" ] && args+=(--master "$master")
[ -n "$memory" ] && args+=(--driver-memory "$memory")
[ -n "$java_options" ] && args+=(--driver-java-options "$java_options")
# shellcheck disable=SC2086
exec "$SPARK_HOME/bin/spark-submit" "${args[@]}" ${SPARK_SUBMIT_OPTS_EXTRA:-} "$job" --config "$CONFIG" "$@"
