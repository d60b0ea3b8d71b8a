#!/usr/bin/env bash
# Opt-in S3A set-up (`make setup-s3`): resolves the JVM packages of conf/cluster.yaml (Delta,
# Avro, hadoop-aws at Spark's Hadoop version and the modular AWS SDK v2 S3 client, ~18 MB,
# instead of hadoop-aws's 600+ MB `bundle`, which jvm.excludes leaves out) into ~/.m2 and
# writes them as local jars into a second Spark conf directory, .venv/spark-conf-cluster/,
# leaving the venv's default spark-defaults.conf (local runs) untouched. Use it with
#   SPARK_CONF_DIR=.venv/spark-conf-cluster spark-submit ... --config conf/cluster.yaml
# Safe to re-run: skipped when the packages, excludes and pyspark install are unchanged.
set -euo pipefail
cd "$(dirname "$0")/.."
CONFIG="${ADLAKE_CLUSTER_CONFIG:-conf/cluster.yaml}"
VENV="${VENV:-.venv}"
py="$VENV/bin/python"
[ -x "$py" ] || { echo "setup_s3: $py missing; run scripts/setup.sh first" >&2; exit 1; }
export SPARK_CONF_DIR="$VENV/spark-conf-cluster"
# The cluster config names its bucket through the environment; any name parses here.
export ADLAKE_BUCKET="${ADLAKE_BUCKET:-set-up}"
m2="${MAVEN_REPO:-$HOME/.m2/repository}"
packages=$("$py" scripts/jvm_args.py packages --config "$CONFIG")
excludes=$("$py" scripts/jvm_args.py excludes --config "$CONFIG")
stamp="$SPARK_CONF_DIR/.adlake-jars"
want=$(printf '%s\n' "$packages" "$excludes" "$m2" "$("$py" -c 'import pyspark; print(pyspark.__file__)')" \
  | sha256sum | cut -c1-16)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -f "$SPARK_CONF_DIR/spark-defaults.conf" ]; then
  echo "setup_s3: ready ($SPARK_CONF_DIR/spark-defaults.conf)"
  exit 0
fi
if ! command -v mvn >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "setup_s3: installing maven to resolve JVM packages"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq maven >/dev/null
  else
    echo "setup_s3: mvn is needed once to resolve $packages (install maven)" >&2
    exit 1
  fi
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
exclusions=""
IFS=',' read -r -a excl <<< "$excludes"
for e in "${excl[@]}"; do
  [ -n "$e" ] && exclusions+="<exclusion><groupId>${e%%:*}</groupId><artifactId>${e#*:}</artifactId></exclusion>"
done
deps=""
IFS=',' read -r -a coords <<< "$packages"
for coord in "${coords[@]}"; do
  IFS=':' read -r group artifact version <<< "$coord"
  deps+="<dependency><groupId>$group</groupId><artifactId>$artifact</artifactId><version>$version</version><exclusions>$exclusions</exclusions></dependency>"
done
cat > "$work/pom.xml" <<POM
<project xmlns="http://maven.apache.org/POM/4.0.0"><modelVersion>4.0.0</modelVersion>
<groupId>adlake</groupId><artifactId>adlake-cluster-packages</artifactId><version>0</version>
<packaging>pom</packaging><dependencies>$deps</dependencies></project>
POM
# Online, unlike setup.sh's offline listing: resolving the pom (exclusions applied) downloads
# only the jars it needs, never the excluded SDK bundle.
echo "setup_s3: resolving $packages into $m2"
started=$(date +%s)
(cd "$work" && mvn -B -q -Dmaven.repo.local="$m2" dependency:build-classpath \
    -Dmdep.outputFile="$work/classpath" -Dmdep.pathSeparator=, >"$work/mvn.log" 2>&1) \
  || { cat "$work/mvn.log" >&2; echo "setup_s3: could not resolve $packages" >&2; exit 1; }
mkdir -p "$SPARK_CONF_DIR"
"$py" scripts/jvm_args.py write-spark-defaults --config "$CONFIG" --classpath "$work/classpath" >/dev/null
echo "$want" > "$stamp"
size=$(tr ',' '\n' < "$work/classpath" | xargs du -cm 2>/dev/null | tail -n1 | cut -f1)
echo "setup_s3: wrote $SPARK_CONF_DIR/spark-defaults.conf (${size} MB of jars, $(( $(date +%s) - started ))s)"
