"""The one SparkSession factory: Delta, Avro and the environment's Spark settings."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping

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


def spark_conf(cfg: AppConfig, overrides: Mapping[str, str] | None = None) -> dict[str, str]:
    """All settings the factory applies, in order of precedence (later wins)."""
    conf: dict[str, str] = {"spark.app.name": cfg.spark.app_name}
    # Under spark-submit the command line's --master decides (PythonRunner sets this variable).
    if cfg.spark.master and "PYSPARK_GATEWAY_PORT" not in os.environ:
        conf["spark.master"] = cfg.spark.master
    if cfg.jvm.packages:
        conf["spark.jars.packages"] = ",".join(cfg.jvm.packages)
    if cfg.jvm.excludes:
        conf["spark.jars.excludes"] = ",".join(cfg.jvm.excludes)
    if cfg.jvm.ivy_dir:
        conf["spark.jars.ivy"] = cfg.jvm.ivy_dir
    conf.update(cfg.spark.conf)
    conf.update(_REQUIRED_CONF)
    conf.update(overrides or {})
    return conf


def build_spark(cfg: AppConfig, overrides: Mapping[str, str] | None = None) -> SparkSession:
    """Create (or reuse) the session for this config and check Delta and Avro are loadable.

    Under `spark-submit` the JVM already exists, so spark.jars.packages must be given on the
    command line (scripts/spark_submit.sh does it from the same config); the check below
    turns a missing jar into one clear error instead of a ClassNotFound deep in a job.
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
            f"{what} is not on the classpath ({class_name}). Run scripts/setup.sh to resolve "
            "jvm.packages, and under spark-submit pass them with scripts/spark_submit.sh."
        ) from exc
