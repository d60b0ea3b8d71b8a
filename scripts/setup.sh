#!/usr/bin/env bash
# Idempotent set-up on a fresh machine: checks Java 17+, creates .venv, installs the project,
# and resolves the JVM packages named in the config into ~/.m2 so every later Spark start
# resolves them offline. Safe to re-run: each step is skipped when already done.
set -euo pipefail
cd "$(dirname "$0")/.."
CONFIG="${ADLAKE_CONFIG:-conf/local.yaml}"
PY="${PYTHON:-python3}"

die() { echo "setup: $*" >&2; exit 1; }

command -v java >/dev/null 2>&1 || die "Java 17+ is required but 'java' is not on PATH (install openjdk-17-jre-headless)."
java_major=$(java -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -n1)
[ -n "$java_major" ] && [ "$java_major" -ge 17 ] || die "Java 17+ is required, found: $(java -version 2>&1 | head -n1)"

command -v "$PY" >/dev/null 2>&1 || die "python3 (3.10+) is required"
"$PY" -c 'import sys; sys.exit(sys.version_info < (3, 10))' || die "Python 3.10+ is required"

if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv"
  "$PY" -m venv .venv
fi
stamp=".venv/.adlake-installed"
want=$(sha256sum pyproject.toml | cut -c1-16)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "setup: installing the project and its pinned dependencies"
  .venv/bin/pip install --quiet --upgrade pip >/dev/null 2>&1 || true
  .venv/bin/pip install --quiet -e '.[dev]'
  echo "$want" > "$stamp"
fi

packages=$(.venv/bin/python scripts/jvm_args.py packages --config "$CONFIG")
m2="${MAVEN_REPO:-$HOME/.m2/repository}"
IFS=',' read -r -a coords <<< "$packages"
for coord in "${coords[@]}"; do
  IFS=':' read -r group artifact version <<< "$coord"
  jar="$m2/${group//.//}/$artifact/$version/$artifact-$version.jar"
  if [ ! -f "$jar" ] || [ ! -f "$m2/.adlake-resolved-$coord" ]; then
    command -v mvn >/dev/null 2>&1 || {
      if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
        echo "setup: installing maven to resolve JVM packages"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq maven >/dev/null
      else
        die "mvn is needed once to resolve $coord into $m2 (install maven)"
      fi
    }
    echo "setup: resolving $coord (with dependencies) into $m2"
    mvn -B -q dependency:get -Dartifact="$coord" -Dtransitive=true >/dev/null \
      || die "could not resolve $coord from Maven Central"
    mkdir -p "$m2" && touch "$m2/.adlake-resolved-$coord"
  fi
done
echo "setup: ready (venv .venv, JVM packages: $packages)"
