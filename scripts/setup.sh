#!/usr/bin/env bash
# Idempotent set-up on a fresh machine: checks Java 17+ and Python 3.11+, creates (or repairs)
# .venv, installs the project, resolves the JVM packages named in the config into ~/.m2 and
# lists their jars (with dependencies, minus jvm.excludes) as spark.jars in the
# spark-defaults.conf of the venv's pyspark, so every later Spark start, plain spark-submit
# included, needs no package resolution at all. Safe to re-run: done steps are skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
CONFIG="${ADLAKE_CONFIG:-conf/local.yaml}"
PY="${PYTHON:-python3}"

die() { echo "setup: $*" >&2; exit 1; }

command -v java >/dev/null 2>&1 || die "Java 17+ is required but 'java' is not on PATH (install openjdk-17-jre-headless)."
java_major=$(java -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -n1)
[ -n "$java_major" ] && [ "$java_major" -ge 17 ] || die "Java 17+ is required, found: $(java -version 2>&1 | head -n1)"

# numpy 2.4 (pinned) supports Python 3.11 and later; pyproject's requires-python says the same.
command -v "$PY" >/dev/null 2>&1 || die "python3 (3.11+) is required"
"$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
  || die "Python 3.11+ is required (numpy 2.4), found $("$PY" --version 2>&1); set PYTHON=python3.11"

# A usable venv runs its own python and pip; one left half-created (python3-venv missing, an
# interrupted run) or built by a too-old Python is rebuilt rather than reused.
venv_ok() {
  [ -x .venv/bin/python ] && [ -x .venv/bin/pip ] \
    && .venv/bin/python -c 'import sys; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1 \
    && .venv/bin/python -m pip --version >/dev/null 2>&1
}
if [ -e .venv ] && ! venv_ok; then
  echo "setup: .venv is incomplete or broken; re-creating it"
  rm -rf .venv
fi
if [ ! -e .venv ]; then
  echo "setup: creating .venv"
  "$PY" -m venv .venv || {
    rm -rf .venv
    die "'$PY -m venv' failed; install the venv module (e.g. apt-get install python3-venv)"
  }
  venv_ok || { rm -rf .venv; die "the new .venv has no working pip (install python3-venv)"; }
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

# The packages as local jars in spark-defaults.conf: one offline Maven classpath of all of
# them with jvm.excludes applied to every dependency (what --exclude-packages does), and the
# driver's launch-time settings; redone only when the config's packages, excludes or those
# settings or the pyspark install change.
inputs=$(.venv/bin/python scripts/jvm_args.py jars-inputs --config "$CONFIG") \
  || die "could not read the JVM settings of $CONFIG"
# (the last line is empty when no package is missing, and $(...) drops a trailing newline)
{ read -r excludes; read -r launch; read -r defaults; read -r submit_packages || true; } <<< "$inputs"
jars_stamp="$(dirname "$defaults")/.adlake-jars"
jars_want=$(printf '%s\n' "$packages" "$excludes" "$launch" "$m2" "$defaults" | sha256sum | cut -c1-16)
if [ ! -f "$jars_stamp" ] || [ "$(cat "$jars_stamp")" != "$jars_want" ] \
  || [ -n "$submit_packages" ]; then
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  exclusions=""
  IFS=',' read -r -a excl <<< "$excludes"
  for e in "${excl[@]}"; do
    [ -n "$e" ] && exclusions+="<exclusion><groupId>${e%%:*}</groupId><artifactId>${e#*:}</artifactId></exclusion>"
  done
  deps=""
  for coord in "${coords[@]}"; do
    IFS=':' read -r group artifact version <<< "$coord"
    deps+="<dependency><groupId>$group</groupId><artifactId>$artifact</artifactId><version>$version</version><exclusions>$exclusions</exclusions></dependency>"
  done
  cat > "$work/pom.xml" <<POM
<project xmlns="http://maven.apache.org/POM/4.0.0"><modelVersion>4.0.0</modelVersion>
<groupId>adlake</groupId><artifactId>adlake-jvm-packages</artifactId><version>0</version>
<packaging>pom</packaging><dependencies>$deps</dependencies></project>
POM
  command -v mvn >/dev/null 2>&1 || die "mvn is needed once to list the jars of $packages (install maven)"
  (cd "$work" && mvn -B -q -o -Dmaven.repo.local="$m2" dependency:build-classpath \
      -Dmdep.outputFile="$work/classpath" -Dmdep.pathSeparator=, >"$work/mvn.log" 2>&1) \
    || { cat "$work/mvn.log" >&2; die "could not list the jars of $packages from $m2"; }
  .venv/bin/python scripts/jvm_args.py write-spark-defaults --config "$CONFIG" \
    --classpath "$work/classpath" >/dev/null
  echo "$jars_want" > "$jars_stamp"
  echo "setup: wrote the JVM packages as local jars (spark.jars) into $defaults"
fi
# The driver JVM's class data sharing archive of those jars (~200 MB beside spark-defaults.conf):
# every later driver maps Spark's, Delta's and Avro's classes instead of loading them from the
# jars. Redone when the classpath or java changes; without it jobs run the same, only slower
# to start.
.venv/bin/python scripts/class_archive.py --config "$CONFIG" \
  || echo "setup: warning: scripts/class_archive.py failed; JVMs start without the archive"
echo "setup: ready (venv .venv, JVM packages: $packages, as jars in $defaults)"
