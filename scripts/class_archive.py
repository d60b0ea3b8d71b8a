"""Set-up's class data sharing archive for the Spark driver JVM (HotSpot's dynamic CDS).

A fresh driver loads ~18k classes from Spark's, Delta's and Avro's jars, parsing and
verifying each: seconds of CPU per JVM start, which every spark-submit job, test process
and notebook kernel pays again. This script runs a small pipeline (bronze, silver, gold on
a few hundred generated impressions) in a driver started with `-XX:ArchiveClassesAtExit`,
which writes the classes it loaded into `<spark conf dir>/adlake-classes.jsa` as it exits
(and `adlake-classes.key`: what it was made for). The session factory and
scripts/spark_submit.sh then start drivers with `-XX:SharedArchiveFile`, which map those
classes instead (`adlake.session.class_sharing`). Measured:
benchmarks/results/2026-12-02-class-sharing.md.

Idempotent: skipped while the archive matches the driver classpath (Spark's jars and the
spark.jars of spark-defaults.conf) and the java binary; redone when they change. A failure
only warns: jobs run the same without the archive. It also writes the archive's settings
into spark-defaults.conf, for plain spark-submit.

    python scripts/class_archive.py [--config conf/local.yaml]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

from adlake.config import DEFAULT_CONFIG, load_config, parse_config
from adlake.session import (
    DRIVER_CLASSPATH,
    DRIVER_JAVA_OPTIONS,
    archive_classpath,
    class_archive_key,
    class_archive_key_path,
    class_archive_path,
    class_sharing,
    launch_settings,
    packages_configured_as_jars,
    read_spark_defaults,
    render_spark_defaults,
    spark_defaults_path,
)

_WARM_UP_IMPRESSIONS = 300


def _warm_up(config: Path, archive: Path, classpath: str, workdir: Path) -> None:
    """The pipeline's stages on generated data in a driver that archives its classes on exit."""
    from pyspark import SparkContext

    from adlake.bronze import ingest
    from adlake.config import SOURCES
    from adlake.gold.run import build_gold
    from adlake.session import build_spark
    from adlake.silver import run as silver_run

    data: dict[str, Any] = yaml.safe_load(config.read_text(encoding="utf-8"))
    data["paths"] = {name: str(workdir / name) for name in ("landing", "lakehouse", "checkpoints")}
    data.setdefault("metrics", {})["http_port"] = 0
    warm_config = workdir / "config.yaml"
    warm_config.write_text(yaml.safe_dump(data), encoding="utf-8")
    generator = Path(__file__).with_name("generate_data.py")
    subprocess.run(
        [sys.executable, str(generator), "--config", str(warm_config),
         "--impressions", str(_WARM_UP_IMPRESSIONS), "--log-level", "ERROR"],
        check=True,
    )  # fmt: skip
    cfg = parse_config(data, workdir)
    java = f"{cfg.spark.conf.get(DRIVER_JAVA_OPTIONS, '')} -XX:ArchiveClassesAtExit={archive}"
    spark = build_spark(cfg, {DRIVER_CLASSPATH: classpath, DRIVER_JAVA_OPTIONS: java.strip()})
    jvm = SparkContext._gateway.proc  # type: ignore[union-attr]
    try:
        ingest.run_batch(spark, cfg, SOURCES)
        silver_run.run_batch(spark, cfg, SOURCES)
        build_gold(spark, cfg)
    finally:
        # The JVM writes the archive as it exits, which it does when its stdin closes
        # (pyspark's gateway): wait for that, so that no JVM is left writing once this
        # process has ended (build() keeps the archive only after a clean run).
        spark.stop()
        jvm.stdin.close()
        jvm.wait(timeout=600)


def _write_settings(config_path: str | None, archive: Path | None) -> None:
    """spark-defaults.conf's block with the archive's classpath and option (or without)."""
    cfg = load_config(config_path)
    target = spark_defaults_path()
    existing = target.read_text(encoding="utf-8")
    defaults = read_spark_defaults(target)
    jars = [j for j in defaults.get("spark.jars", "").split(",") if j]
    settings = launch_settings(cfg)
    if archive is not None:
        java = f"{settings.get(DRIVER_JAVA_OPTIONS, '')} -XX:SharedArchiveFile={archive}"
        settings[DRIVER_JAVA_OPTIONS] = java.strip()
        settings[DRIVER_CLASSPATH] = archive_classpath(defaults)
    target.write_text(render_spark_defaults(existing, jars, settings), encoding="utf-8")


def build(config_path: str | None) -> int:
    defaults_path = spark_defaults_path()
    defaults = read_spark_defaults(defaults_path)
    cfg = load_config(config_path)
    if not packages_configured_as_jars(cfg.jvm.packages, defaults):
        print("class_archive: skipped (set-up has not written the jars into spark-defaults.conf)")
        return 0
    archive = class_archive_path()
    if class_sharing() is not None:
        _write_settings(config_path, archive)
        print(f"class_archive: ready ({archive})")
        return 0
    key = class_archive_key_path(archive)
    for stale in (key, archive):
        stale.unlink(missing_ok=True)
    _write_settings(config_path, None)
    classpath = archive_classpath(read_spark_defaults(defaults_path))
    partial = archive.with_suffix(".partial")
    partial.unlink(missing_ok=True)
    config = Path(config_path) if config_path else DEFAULT_CONFIG
    with tempfile.TemporaryDirectory(prefix="adlake-class-archive-") as work:
        log = Path(work) / "warm-up.log"
        with log.open("w", encoding="utf-8") as out:
            done = subprocess.run(
                [sys.executable, __file__, "--warm-up", str(partial), "--config", str(config),
                 "--classpath", classpath, "--workdir", work],
                stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"},
                check=False,
            )  # fmt: skip
        if done.returncode != 0 or not partial.is_file() or partial.stat().st_size == 0:
            tail = log.read_text(encoding="utf-8", errors="replace").splitlines()[-15:]
            print("class_archive: warning: no archive made (jobs run the same, their JVMs start "
                  "slower); last lines of the warm-up:\n  " + "\n  ".join(tail))  # fmt: skip
            partial.unlink(missing_ok=True)
            return 0
    partial.rename(archive)
    key.write_text(class_archive_key(classpath), encoding="utf-8")
    _write_settings(config_path, archive)
    size = archive.stat().st_size / 1e6
    print(f"class_archive: wrote {archive} ({size:.0f} MB)")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", default=None)
    parser.add_argument("--warm-up", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--classpath", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.warm_up is not None:
        _warm_up(Path(args.config), args.warm_up, args.classpath, args.workdir)
        return 0
    return build(args.config)


if __name__ == "__main__":
    sys.exit(main())
