"""The one SparkSession factory: Delta, Avro and the environment's Spark settings."""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from pyspark.sql import SparkSession

from adlake.config import AppConfig

log = logging.getLogger(__name__)

# Settings every AdLake session needs, whatever the environment says.
_REQUIRED_CONF: dict[str, str] = {
    "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
    "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
    # A JSON record repeating a key must become a quarantine row, not a job failure.
    "spark.sql.mapKeyDedupPolicy": "LAST_WIN",
    # Corrupt files are quarantined by the ingest job; silently skipping them would lose data.
    "spark.sql.files.ignoreCorruptFiles": "false",
}


class MissingJvmPackageError(RuntimeError):
    """Delta or spark-avro classes are not on the driver classpath."""


# scripts/setup.sh writes the jvm.packages as local jars under this marker; a later set-up
# replaces exactly the marked block and keeps any other line of the file.
SPARK_DEFAULTS_MARKER = "# adlake: jvm.packages as local jars (written by scripts/setup.sh)"


def spark_home() -> Path:
    """SPARK_HOME, else the pyspark package directory (what pip's spark-submit uses)."""
    if os.environ.get("SPARK_HOME"):
        return Path(os.environ["SPARK_HOME"])
    import pyspark

    return Path(pyspark.__file__).parent


def spark_defaults_path() -> Path:
    """The spark-defaults.conf that spark-submit (and so every pyspark JVM) reads."""
    conf_dir = os.environ.get("SPARK_CONF_DIR")
    return (Path(conf_dir) if conf_dir else spark_home() / "conf") / "spark-defaults.conf"


def read_spark_defaults(path: Path) -> dict[str, str]:
    """key -> value of a spark-defaults.conf (whitespace- or '='-separated, # comments)."""
    if not path.is_file():
        return {}
    settings: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, _, value = line.replace("=", " ", 1).partition(" ")
        settings[key.strip()] = value.strip()
    return settings


def _jar_names(packages: Iterable[str]) -> list[str]:
    """artifact-version.jar of each group:artifact:version coordinate."""
    names = []
    for coord in packages:
        _, artifact, version = coord.split(":")
        names.append(f"{artifact}-{version}.jar")
    return names


def packages_configured_as_jars(packages: Iterable[str], defaults: Mapping[str, str]) -> bool:
    """True when spark.jars of the defaults holds an existing local jar of every package, so
    a JVM started by spark-submit has them without any Ivy resolution.
    """
    jars = [j.strip() for j in defaults.get("spark.jars", "").split(",") if j.strip()]
    present = {
        Path(j.removeprefix("file:")).name for j in jars if Path(j.removeprefix("file:")).is_file()
    }
    return all(name in present for name in _jar_names(packages))


def render_spark_defaults(
    existing: str, jars: Iterable[str], settings: Mapping[str, str] | None = None
) -> str:
    """The spark-defaults.conf text with AdLake's block replaced: spark.jars = `jars`, then
    `settings` (launch-time settings such as spark.driver.memory, which a running JVM ignores).

    Lines outside the block are kept, except ones setting a key the block sets (or
    spark.jars.packages, which would resolve the packages again, or
    spark.driver.extraClassPath, which only the class data sharing archive's block sets):
    those are dropped with a warning naming them.
    """
    block = {"spark.jars": ",".join(jars), **(settings or {})}
    owned = {*block, "spark.jars.packages", DRIVER_CLASSPATH}
    kept: list[str] = []
    in_block = False
    for line in existing.splitlines():
        if line == SPARK_DEFAULTS_MARKER:
            in_block = True
            continue
        key = line.strip().replace("=", " ", 1).split(" ", 1)[0]
        if in_block and key in owned:
            continue
        in_block = False
        if key in owned:
            log.warning("spark-defaults.conf: replacing %r with AdLake's setting", line)
            continue
        kept.append(line)
    while kept and not kept[-1].strip():
        kept.pop()
    lines = [SPARK_DEFAULTS_MARKER, *(f"{key}  {value}" for key, value in block.items())]
    return "\n".join([*kept, *([""] if kept else []), *lines]) + "\n"


# The driver JVM's class data sharing archive (scripts/class_archive.py writes it at set-up),
# beside the spark-defaults.conf whose jars it holds, with what it was made for (`.key`).
CLASS_ARCHIVE_NAME = "adlake-classes.jsa"
DRIVER_JAVA_OPTIONS = "spark.driver.extraJavaOptions"
DRIVER_CLASSPATH = "spark.driver.extraClassPath"


@dataclass(frozen=True)
class ClassSharing:
    """A driver JVM started with `classpath` first and `java_option` maps the archive's classes
    (Spark's, Delta's, Avro's) instead of parsing and verifying them from their jars."""

    classpath: str
    java_option: str


def class_archive_path() -> Path:
    return spark_defaults_path().with_name(CLASS_ARCHIVE_NAME)


def class_archive_key_path(archive: Path) -> Path:
    """Where `class_archive_key` of the archive is kept: beside it."""
    return archive.with_suffix(".key")


# What the config sets for a driver before its JVM starts, so a plain spark-submit (which
# reads spark-defaults.conf) starts its driver as the factory would.
LAUNCH_SETTINGS = ("spark.driver.memory", DRIVER_JAVA_OPTIONS)


def launch_settings(cfg: AppConfig) -> dict[str, str]:
    """The config's `LAUNCH_SETTINGS` that are set, for spark-defaults.conf."""
    return {key: cfg.spark.conf[key] for key in LAUNCH_SETTINGS if cfg.spark.conf.get(key)}


def archive_classpath(defaults: Mapping[str, str]) -> str:
    """Spark's jars, then the spark.jars of `defaults`: the driver classpath an archive covers.

    Set as spark.driver.extraClassPath, these come before the conf directory on the
    launcher's classpath; HotSpot refuses to archive classes behind a non-empty directory.
    """
    jars = [j.strip().removeprefix("file:") for j in defaults.get("spark.jars", "").split(",")]
    return os.pathsep.join([str(spark_home() / "jars" / "*"), *[j for j in jars if j]])


def class_archive_key(classpath: str) -> str:
    """What an archive is valid for: the classpath and the java binary (its real path and
    modification time, which a JDK update changes), the JVM spark-submit starts."""
    home = os.environ.get("JAVA_HOME")
    found = str(Path(home) / "bin" / "java") if home else shutil.which("java")
    java = Path(found).resolve() if found else None
    stamp = f"{java} {java.stat().st_mtime_ns}" if java and java.is_file() else "no java"
    return f"{classpath}\n{stamp}\n"


def class_sharing() -> ClassSharing | None:
    """The set-up's archive, when it was made for today's classpath and JVM (else None: a JVM
    given a stale archive ignores it, with a warning on its output)."""
    archive = class_archive_path()
    key = class_archive_key_path(archive)
    if not archive.is_file() or not key.is_file():
        return None
    classpath = archive_classpath(read_spark_defaults(spark_defaults_path()))
    if key.read_text(encoding="utf-8") != class_archive_key(classpath):
        return None
    return ClassSharing(classpath, f"-XX:SharedArchiveFile={archive}")


def spark_conf(cfg: AppConfig, overrides: Mapping[str, str] | None = None) -> dict[str, str]:
    """All settings the factory applies, in order of precedence (later wins)."""
    conf: dict[str, str] = {"spark.app.name": cfg.spark.app_name}
    # Under spark-submit the command line's --master decides (PythonRunner sets this variable).
    if cfg.spark.master and "PYSPARK_GATEWAY_PORT" not in os.environ:
        conf["spark.master"] = cfg.spark.master
    # Set-up normally writes the packages as local jars into spark-defaults.conf, which the
    # JVM reads at launch; only without them does Spark resolve the packages with Ivy.
    defaults = read_spark_defaults(spark_defaults_path())
    if cfg.jvm.packages and not packages_configured_as_jars(cfg.jvm.packages, defaults):
        conf["spark.jars.packages"] = ",".join(cfg.jvm.packages)
        if cfg.jvm.excludes:
            conf["spark.jars.excludes"] = ",".join(cfg.jvm.excludes)
        if cfg.jvm.ivy_dir:
            conf["spark.jars.ivy"] = cfg.jvm.ivy_dir
    conf.update(cfg.spark.conf)
    conf.update(_REQUIRED_CONF)
    conf.update(overrides or {})
    # Launch-time settings: only when this call starts the JVM (not under spark-submit), and
    # not when the config chose its own driver classpath.
    sharing = None if "PYSPARK_GATEWAY_PORT" in os.environ else class_sharing()
    if sharing is not None and DRIVER_CLASSPATH not in conf:
        conf[DRIVER_CLASSPATH] = sharing.classpath
        java = f"{conf.get(DRIVER_JAVA_OPTIONS, '')} {sharing.java_option}"
        conf[DRIVER_JAVA_OPTIONS] = java.strip()
    return conf


def build_spark(cfg: AppConfig, overrides: Mapping[str, str] | None = None) -> SparkSession:
    """Create (or reuse) the session for this config and check Delta and Avro are loadable.

    Under `spark-submit` the JVM already exists, so the jars must come from spark-defaults.conf
    (written by scripts/setup.sh) or the command line (scripts/spark_submit.sh); the check
    below turns a missing jar into one clear error instead of a ClassNotFound deep in a job.
    """
    builder = SparkSession.builder
    for key, value in spark_conf(cfg, overrides).items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel(cfg.spark.log_level)
    _check_class(spark, "org.apache.spark.sql.delta.catalog.DeltaCatalog", "Delta Lake")
    _check_class(spark, "org.apache.spark.sql.avro.AvroFileFormat", "spark-avro")
    log.info(
        "spark session ready: master=%s packages=%s", spark.sparkContext.master, cfg.jvm.packages
    )
    return spark


def _check_class(spark: SparkSession, class_name: str, what: str) -> None:
    jvm = spark.sparkContext._jvm
    assert jvm is not None
    try:
        jvm.java.lang.Class.forName(
            class_name, True, jvm.Thread.currentThread().getContextClassLoader()
        )
    except Exception as exc:  # py4j wraps ClassNotFoundException
        raise MissingJvmPackageError(
            f"{what} is not on the classpath ({class_name}). Run scripts/setup.sh: it resolves "
            f"jvm.packages into ~/.m2 and lists their jars as spark.jars in "
            f"{spark_defaults_path()}, which spark-submit reads (or start the job with "
            "scripts/spark_submit.sh, which passes them as --packages)."
        ) from exc
