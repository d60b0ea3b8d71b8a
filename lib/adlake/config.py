"""Typed configuration, loaded once from `conf/<env>.yaml`; errors name the bad key."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from adlake.settings.base import (
    ConfigError,
    ConfigSection,
    parse_duration,
    parse_trigger,
    positive_int,
    trigger_interval,
)
from adlake.settings.gold import AttributionParams, parse_gold
from adlake.settings.quality import QualitySettings, parse_quality
from adlake.settings.silver import SilverSettings, parse_silver

__all__ = [
    "AppConfig",
    "ConfigError",
    "ConfigSection",
    "parse_duration",
    "parse_trigger",
    "positive_int",
    "trigger_interval",
]

SOURCES: tuple[str, ...] = ("impressions", "clicks_conversions", "bid_requests")
DEFAULT_CONFIG = Path(__file__).resolve().parents[2] / "conf" / "local.yaml"


@dataclass(frozen=True)
class Paths:
    """Root locations; local paths are made absolute so Spark and subprocesses agree."""

    landing: str
    lakehouse: str
    checkpoints: str


@dataclass(frozen=True)
class SparkSettings:
    """Session settings applied by the one SparkSession factory."""

    app_name: str
    master: str | None
    conf: dict[str, str]
    log_level: str


@dataclass(frozen=True)
class JvmSettings:
    """Maven coordinates passed as spark.jars.packages, resolved once at set-up."""

    packages: tuple[str, ...]
    excludes: tuple[str, ...]
    ivy_dir: str | None


@dataclass(frozen=True)
class SourceOptions:
    """Per-source landing options."""

    name: str
    path_glob: str
    max_files_per_trigger: int
    # Re-ingest a file re-landed under an already ingested name with a new size or
    # modification time as a new version (a new run; the old rows stay). Off: report only.
    reingest_changed: bool = False


@dataclass(frozen=True)
class StreamSettings:
    """Defaults for `--mode stream`."""

    trigger: str
    max_file_age: str
    stop_timeout_seconds: int


@dataclass(frozen=True)
class MaintenanceSettings:
    """OPTIMIZE / VACUUM settings of `jobs/maintain_tables.py`."""

    vacuum_retention_seconds: int
    zorder_by: tuple[str, ...]


@dataclass(frozen=True)
class MetricsSettings:
    """Prometheus export: the streaming driver endpoint and where batch jobs publish.

    Batch jobs push to `pushgateway_url` (env ADLAKE_PUSHGATEWAY_URL wins) when set, else
    write `<textfile_dir>/<job>.prom` for node_exporter's textfile collector.
    """

    enabled: bool
    http_host: str
    http_port: int
    pushgateway_url: str | None
    textfile_dir: str
    push_timeout_seconds: float


@dataclass(frozen=True)
class AppConfig:
    """The whole validated configuration of one environment."""

    env: str
    paths: Paths
    spark: SparkSettings
    jvm: JvmSettings
    sources: dict[str, SourceOptions]
    stream: StreamSettings
    silver: SilverSettings
    attribution: AttributionParams
    maintenance: MaintenanceSettings
    metrics: MetricsSettings
    quality: QualitySettings
    raw: dict[str, Any] = field(repr=False, compare=False, default_factory=dict)
    # `leases.ttl`: how long a writer's lease lives without renewal (adlake.lease).
    lease_ttl_seconds: int = 300

    def table_path(self, relative: str) -> str:
        """Absolute location of a lakehouse table such as `bronze/impressions`."""
        return join_path(self.paths.lakehouse, relative)

    def checkpoint_path(self, relative: str) -> str:
        """Absolute location of a streaming checkpoint."""
        return join_path(self.paths.checkpoints, relative)

    def landing_path(self, relative: str) -> str:
        """Absolute location under the landing directory."""
        return join_path(self.paths.landing, relative)


def join_path(root: str, relative: str) -> str:
    """Join without `os.path` so URIs such as `s3a://bucket/x` keep their scheme."""
    return root.rstrip("/") + "/" + relative.lstrip("/")


def _is_uri(value: str) -> bool:
    return bool(re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", value))


_ENV_REFERENCE = re.compile(r"\$(\w+|\{[^}]*\})")


def _resolve_path(value: str, base: Path, key: str = "paths") -> str:
    """`$VAR` / `${VAR}` come from the environment, in URIs too (a cluster config names its
    bucket as `s3a://${ADLAKE_BUCKET}/...`); an unset one fails naming the key. Local paths
    are made absolute against `base`; URIs are kept."""
    expanded = os.path.expandvars(value)
    unset = _ENV_REFERENCE.search(expanded)
    if unset:
        name = unset.group(1).strip("{}")
        raise ConfigError(key, f"environment variable {name} is not set (in {value!r})")
    if _is_uri(expanded):
        return expanded
    local = Path(os.path.expanduser(expanded))
    return str(local if local.is_absolute() else (base / local).resolve())


def parse_config(data: Any, base_dir: Path) -> AppConfig:
    """Validate a loaded YAML document; relative paths resolve against `base_dir`."""
    root = ConfigSection(data, "")
    env = root.get("env", str)

    p = root.section("paths")
    paths = Paths(
        landing=_resolve_path(p.get("landing", str), base_dir, p.key("landing")),
        lakehouse=_resolve_path(p.get("lakehouse", str), base_dir, p.key("lakehouse")),
        checkpoints=_resolve_path(p.get("checkpoints", str), base_dir, p.key("checkpoints")),
    )
    p.done()

    s = root.section("spark")
    conf_section = s.get("conf", dict, {})
    spark_conf: dict[str, str] = {}
    for k, v in conf_section.items():
        if not isinstance(v, (str, int, float, bool)):
            raise ConfigError(f"spark.conf.{k}", f"expected a scalar, got {v!r}")
        spark_conf[str(k)] = str(v).lower() if isinstance(v, bool) else str(v)
    log_level = s.get("log_level", str, "WARN").upper()
    if log_level not in {"ALL", "DEBUG", "ERROR", "FATAL", "INFO", "OFF", "TRACE", "WARN"}:
        raise ConfigError("spark.log_level", f"unknown log level {log_level!r}")
    spark = SparkSettings(
        app_name=s.get("app_name", str, "adlake"),
        master=s.get("master", str, None, nullable=True),
        conf=spark_conf,
        log_level=log_level,
    )
    s.done()

    j = root.section("jvm")
    packages = j.get("packages", list)
    excludes = j.get("excludes", list, [])
    for key, items in (("jvm.packages", packages), ("jvm.excludes", excludes)):
        for item in items:
            parts = item.split(":") if isinstance(item, str) else []
            want = 3 if key == "jvm.packages" else 2
            if len(parts) != want or not all(parts):
                raise ConfigError(key, f"bad Maven coordinate {item!r}")
    ivy_dir = j.get("ivy_dir", str, None, nullable=True)
    jvm = JvmSettings(
        packages=tuple(packages),
        excludes=tuple(excludes),
        ivy_dir=_resolve_path(ivy_dir, base_dir, j.key("ivy_dir")) if ivy_dir else None,
    )
    j.done()

    src = root.section("sources")
    sources: dict[str, SourceOptions] = {}
    for name in SOURCES:
        one = src.section(name)
        sources[name] = SourceOptions(
            name=name,
            path_glob=one.get("path_glob", str),
            max_files_per_trigger=positive_int(one, "max_files_per_trigger", 100),
            reingest_changed=one.get("reingest_changed", bool, False),
        )
        one.done()
    src.done()

    st = root.section("stream", required=False)
    stream = StreamSettings(
        trigger=parse_trigger(st.get("trigger", str, "available-now")),
        max_file_age=st.get("max_file_age", str, "3650d"),
        stop_timeout_seconds=positive_int(st, "stop_timeout_seconds", 120),
    )
    st.done()

    silver = parse_silver(root.section("silver"))

    attribution = parse_gold(root.section("gold", required=False))
    maintenance = _maintenance(root.section("maintenance", required=False))
    metrics = _metrics(root.section("metrics", required=False), paths, base_dir)
    leases = root.section("leases", required=False)
    lease_ttl = parse_duration(leases.get("ttl", str, "5 minutes"), leases.key("ttl"))
    if lease_ttl < MIN_LEASE_TTL_SECONDS:
        raise ConfigError(
            leases.key("ttl"), f"must be at least {MIN_LEASE_TTL_SECONDS}s, got {lease_ttl}s"
        )
    leases.done()

    quality = parse_quality(root.get("quality", dict, {}, nullable=True) or {}, "quality")

    root.done()
    return AppConfig(
        env=env,
        paths=paths,
        spark=spark,
        jvm=jvm,
        sources=sources,
        stream=stream,
        silver=silver,
        attribution=attribution,
        maintenance=maintenance,
        metrics=metrics,
        quality=quality,
        raw=data,
        lease_ttl_seconds=lease_ttl,
    )


# Delta's own default; VACUUM below it can delete files that a running reader or a
# concurrent writer still needs, so no config or flag may go lower.
MIN_VACUUM_RETENTION_SECONDS = 7 * 86_400
# Renewal runs every ttl/3: below this a slow file system could let a live lease expire.
MIN_LEASE_TTL_SECONDS = 30


def _maintenance(m: ConfigSection) -> MaintenanceSettings:
    key = m.key("vacuum_retention")
    retention = parse_duration(m.get("vacuum_retention", str, "7 days"), key)
    if retention < MIN_VACUUM_RETENTION_SECONDS:
        raise ConfigError(
            key, f"must be at least 7 days ({MIN_VACUUM_RETENTION_SECONDS}s), got {retention}s"
        )
    zorder = m.get("zorder_by", list, ["campaign_id"])
    if not all(isinstance(c, str) and c for c in zorder):
        raise ConfigError(m.key("zorder_by"), f"expected a list of column names, got {zorder!r}")
    m.done()
    return MaintenanceSettings(vacuum_retention_seconds=retention, zorder_by=tuple(zorder))


def _metrics(m: ConfigSection, paths: Paths, base_dir: Path) -> MetricsSettings:
    port = m.get("http_port", int, 9108)
    if not 0 <= port <= 65535:
        raise ConfigError(m.key("http_port"), f"must be a TCP port (0 = off), got {port}")
    timeout = float(m.get("push_timeout_seconds", (int, float), 5))
    if timeout <= 0:
        raise ConfigError(m.key("push_timeout_seconds"), f"must be > 0, got {timeout}")
    url = os.environ.get("ADLAKE_PUSHGATEWAY_URL") or m.get(
        "pushgateway_url", str, None, nullable=True
    )
    textfile = m.get("textfile_dir", str, None, nullable=True)
    settings = MetricsSettings(
        enabled=m.get("enabled", bool, True),
        http_host=m.get("http_host", str, "0.0.0.0"),
        http_port=port,
        pushgateway_url=url or None,
        textfile_dir=(
            _resolve_path(textfile, base_dir, m.key("textfile_dir"))
            if textfile
            else join_path(paths.lakehouse, "_metrics")
        ),
        push_timeout_seconds=timeout,
    )
    m.done()
    return settings


def load_config(path: str | Path | None = None) -> AppConfig:
    """Load and validate a YAML config; relative paths resolve against the current directory."""
    config_path = Path(path) if path else DEFAULT_CONFIG
    try:
        text = config_path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError("--config", f"cannot read {config_path}: {exc}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError("<file>", f"{config_path} is not valid YAML: {exc}") from exc
    return parse_config(data, Path.cwd())
