#!/usr/bin/env bash
# Idempotent: makes promtool, prometheus and alertmanager (and the Pushgateway) available for the
# alerting-rule tests (`make promtool-test`) by installing the Debian packages when any is
# missing. Never starts a daemon: service starts are blocked during the install with a
# temporary policy-rc.d, and any Prometheus/Alertmanager/Pushgateway process that appears
# anyway is killed by pid. Safe to re-run: does nothing when the binaries are already there.
set -euo pipefail

PACKAGES=(prometheus prometheus-alertmanager prometheus-pushgateway)
POLICY=/usr/sbin/policy-rc.d
# Debian names the daemons prometheus-alertmanager and prometheus-pushgateway; the upstream
# names are linked to them in /usr/local/bin so docs and commands can use either.
ALIASES=("alertmanager:prometheus-alertmanager" "pushgateway:prometheus-pushgateway")

log() { echo "setup_prometheus: $*"; }
die() { echo "setup_prometheus: $*" >&2; exit 1; }

missing() {
  local tool out=()
  for tool in promtool prometheus alertmanager; do
    command -v "$tool" >/dev/null 2>&1 || out+=("$tool")
  done
  echo "${out[*]:-}"
}

link_aliases() {
  local pair name target
  for pair in "${ALIASES[@]}"; do
    name=${pair%%:*}
    target=${pair#*:}
    if ! command -v "$name" >/dev/null 2>&1 && [ -x "/usr/bin/$target" ]; then
      ln -sf "/usr/bin/$target" "/usr/local/bin/$name"
      log "linked /usr/local/bin/$name -> /usr/bin/$target"
    fi
  done
}

# Pids of running Prometheus-family daemons, found by executable path (never by a name pattern,
# so unrelated processes that mention "prometheus" are never touched).
daemon_pids() {
  local exe_link exe pid
  for exe_link in /proc/[0-9]*/exe; do
    exe=$(readlink "$exe_link" 2>/dev/null) || continue
    case "$exe" in
      /usr/bin/prometheus|/usr/bin/prometheus-alertmanager|/usr/bin/prometheus-pushgateway|\
      /usr/bin/prometheus-node-exporter)
        pid=${exe_link#/proc/}
        echo "${pid%/exe}" ;;
    esac
  done
}

[ "$(id -u)" = 0 ] && link_aliases
if [ -z "$(missing)" ]; then
  log "already installed: $(prometheus --version 2>&1 | head -n1)"
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  [ "$(missing)" = alertmanager ] && [ -x /usr/bin/prometheus-alertmanager ] \
    && die "alertmanager is installed as /usr/bin/prometheus-alertmanager; link it onto PATH as alertmanager (or re-run this script as root)"
  die "missing on PATH: $(missing). Install them as root with: apt-get install -y --no-install-recommends ${PACKAGES[*]} (or re-run this script as root)"
fi
command -v apt-get >/dev/null 2>&1 || die "missing on PATH: $(missing), and there is no apt-get to install ${PACKAGES[*]}"

before=$(daemon_pids | sort)
systemd_units=()
if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
  for unit in "${PACKAGES[@]}"; do
    systemctl is-active --quiet "$unit" 2>/dev/null || systemd_units+=("$unit")
  done
fi
policy_backup=""
restore_policy() {
  if [ -n "$policy_backup" ]; then
    mv -f "$policy_backup" "$POLICY"
  else
    rm -f "$POLICY"
  fi
}
if [ -e "$POLICY" ]; then
  policy_backup=$(mktemp /usr/sbin/.policy-rc.d.adlake.XXXXXX)
  cp -p "$POLICY" "$policy_backup"
fi
trap restore_policy EXIT
trap 'exit 130' INT TERM
# 101 = "action forbidden": invoke-rc.d and deb-systemd-invoke skip every service start.
printf '#!/bin/sh\n# temporary, from AdLake scripts/setup_prometheus.sh\nexit 101\n' > "$POLICY"
chmod 755 "$POLICY"

export DEBIAN_FRONTEND=noninteractive
apt_install() { apt-get install -y -qq --no-install-recommends "${PACKAGES[@]}" >/dev/null; }
log "installing ${PACKAGES[*]} (missing: $(missing))"
if ! apt_install; then
  log "install failed; refreshing the package index and retrying"
  apt-get update -qq
  apt_install || die "apt-get install ${PACKAGES[*]} failed"
fi
restore_policy
trap - EXIT

# Under systemd, stop (not disable) the units that were not running before the install; then
# kill by pid any daemon the install started despite the policy, and check none is left.
for unit in "${systemd_units[@]}"; do
  systemctl stop "$unit" 2>/dev/null || true
done
started=$(comm -13 <(echo "$before") <(daemon_pids | sort))
for pid in $started; do
  log "stopping daemon started by the install: pid $pid ($(readlink "/proc/$pid/exe" 2>/dev/null || true))"
  kill "$pid" 2>/dev/null || true
done
for _ in 1 2 3 4 5 6 7 8 9 10; do
  [ -z "$(comm -13 <(echo "$before") <(daemon_pids | sort))" ] && break
  sleep 1
done
[ -z "$(comm -13 <(echo "$before") <(daemon_pids | sort))" ] \
  || die "daemons started by the install are still running: $(comm -13 <(echo "$before") <(daemon_pids | sort) | tr '\n' ' ')"
link_aliases

[ -z "$(missing)" ] || die "still missing on PATH after install: $(missing)"
promtool --version >/dev/null 2>&1 || die "promtool does not run"
alertmanager --version >/dev/null 2>&1 || die "alertmanager does not run"
log "ready: $(prometheus --version 2>&1 | head -n1); $(alertmanager --version 2>&1 | head -n1)"
