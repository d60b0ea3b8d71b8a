"""The plain `spark-submit jobs/<job>.py --config ...` form: the JVM packages come from the
spark-defaults.conf set-up writes (local jars), with no Ivy resolution at job start."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from adlake.config import DEFAULT_CONFIG, load_config
from adlake.session import (
    SPARK_DEFAULTS_MARKER,
    archive_classpath,
    class_archive_key,
    class_archive_key_path,
    class_archive_path,
    class_sharing,
    packages_configured_as_jars,
    read_spark_defaults,
    render_spark_defaults,
    spark_conf,
    spark_defaults_path,
    spark_home,
)
from adlake_datagen import DatagenConfig, generate_landing
from scripts.jvm_args import jars_to_add
from tests.conftest import config_for, write_config

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("io.delta:delta-spark_4.2_2.13:4.4.0", "org.apache.spark:spark-avro_2.13:4.2.0")


def test_packages_count_as_configured_only_when_every_jar_exists(tmp_path: Path) -> None:
    delta = tmp_path / "delta-spark_4.2_2.13-4.4.0.jar"
    avro = tmp_path / "spark-avro_2.13-4.2.0.jar"
    delta.touch()
    assert not packages_configured_as_jars(PACKAGES, {"spark.jars": f"{delta},{avro}"})
    avro.touch()
    assert packages_configured_as_jars(PACKAGES, {"spark.jars": f"file:{delta}, {avro}"})
    assert not packages_configured_as_jars(PACKAGES, {})


def test_render_spark_defaults_replaces_only_its_block() -> None:
    existing = (
        "spark.driver.memory 2g\n"
        "spark.jars.packages io.delta:delta-spark_4.2_2.13:4.3.0\n"
        f"{SPARK_DEFAULTS_MARKER}\nspark.jars /old/a.jar\n"
        "spark.eventLog.enabled true\n"
    )
    jars, settings = ["/m2/a.jar", "/m2/b.jar"], {"spark.driver.memory": "4g"}
    text = render_spark_defaults(existing, jars, settings)
    assert text == (
        "spark.eventLog.enabled true\n\n"
        f"{SPARK_DEFAULTS_MARKER}\nspark.jars  /m2/a.jar,/m2/b.jar\nspark.driver.memory  4g\n"
    )
    assert render_spark_defaults(text, jars, settings) == text  # idempotent


def test_jars_spark_ships_are_left_out() -> None:
    classpath = [
        "/m2/io/delta/delta-spark_4.2_2.13/4.4.0/delta-spark_4.2_2.13-4.4.0.jar",
        "/m2/org/scala-lang/scala-library/2.13.17/scala-library-2.13.17.jar",
        "/m2/org/apache/spark/spark-tags_2.13/4.2.0/spark-tags_2.13-4.2.0.jar",
        "/m2/io/delta/delta-storage/4.4.0/delta-storage-4.4.0.jar",
    ]
    shipped = [
        "scala-library-2.13.18.jar",
        "spark-tags_2.13-4.2.0.jar",
        "spark-core_2.13-4.2.0.jar",
    ]
    assert jars_to_add(classpath, shipped) == [classpath[0], classpath[3]]


@pytest.mark.slow
def test_plain_spark_submit_runs_bronze_without_package_resolution(tmp_path: Path) -> None:
    """What a user types with the venv active; fails with MissingJvmPackageError when set-up
    has not put the packages into spark-defaults.conf."""
    defaults = read_spark_defaults(spark_defaults_path())
    assert packages_configured_as_jars(load_config(DEFAULT_CONFIG).jvm.packages, defaults), (
        f"run scripts/setup.sh: {spark_defaults_path()} does not list the JVM packages as jars"
    )
    cfg = config_for(tmp_path)
    generate_landing(DatagenConfig(impressions=40, files=1), Path(cfg.paths.landing))
    config = write_config(tmp_path)
    venv_bin = Path(sys.executable).parent
    env = {k: v for k, v in os.environ.items() if k not in ("SPARK_HOME", "PYSPARK_PYTHON")}
    env.update(VIRTUAL_ENV=str(venv_bin.parent), PATH=f"{venv_bin}{os.pathsep}{env['PATH']}")
    done = subprocess.run(
        ["spark-submit", "jobs/bronze_ingest.py", "--config", str(config),
         "--source", "clicks_conversions"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert re.search(r"clicks_conversions run 1 \(batch\): files=1 bronze_rows=[1-9]", done.stdout)
    for ivy_line in (":: resolving dependencies", "Ivy Default Cache", "local-m2-cache"):
        assert ivy_line not in done.stderr
    # scripts/spark_submit.sh agrees: it passes no --packages when the jars are configured.
    submit = subprocess.run(
        [sys.executable, "scripts/jvm_args.py", "submit-packages", "--config", str(config)],
        cwd=ROOT, capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert submit.stdout.strip() == ""


def test_the_jvm_starts_with_the_configured_compiler_and_collector(spark: SparkSession) -> None:
    """The config's driver JVM options reach the JVM the session factory starts, and
    spark_submit.sh reads the same setting: HotSpot compiles generated methods over 8,000
    bytecode bytes (a wide stage otherwise runs interpreted) and collects with the parallel
    (throughput) collector, not G1."""
    jvm = spark.sparkContext._jvm
    assert jvm is not None
    management = jvm.java.lang.management.ManagementFactory
    arguments = list(management.getRuntimeMXBean().getInputArguments())
    assert {"-XX:-DontCompileHugeMethods", "-XX:+UseParallelGC"} <= set(arguments)
    collectors = sorted(str(bean.getName()) for bean in management.getGarbageCollectorMXBeans())
    assert collectors == ["PS MarkSweep", "PS Scavenge"]
    printed = subprocess.run(
        [sys.executable, "scripts/jvm_args.py", "driver-java-options", "--config", str(DEFAULT_CONFIG)],
        cwd=ROOT, capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert printed.stdout.strip() == "-XX:-DontCompileHugeMethods -XX:+UseParallelGC"


def test_the_scripts_one_start_settings_are_the_single_settings_line_by_line() -> None:
    """spark_submit.sh and setup.sh read several settings from one interpreter start; each
    line is what the single commands print (so both ways can never disagree)."""

    def printed(*what: str) -> list[str]:
        done = subprocess.run(
            [sys.executable, "scripts/jvm_args.py", *what, "--config", str(DEFAULT_CONFIG)],
            cwd=ROOT, capture_output=True, text=True, check=True,
        )  # fmt: skip
        return done.stdout.split("\n")[:-1]

    singles = {
        name: printed(name)[0]
        for name in (
            "submit-packages", "excludes", "master", "driver-memory", "driver-java-options",
            "spark-defaults", "class-sharing-classpath", "class-sharing-option",
        )
    }  # fmt: skip
    sharing = class_sharing()
    assert sharing is not None  # set-up made the archive (`make test` runs set-up first)
    assert printed("submit-inputs") == [
        singles["submit-packages"],
        singles["excludes"],
        "local[*]",
        "4g",
        "-XX:-DontCompileHugeMethods -XX:+UseParallelGC",
        sharing.classpath,
        f"-XX:SharedArchiveFile={class_archive_path()}",
    ]
    assert [singles["class-sharing-classpath"], singles["class-sharing-option"]] == [
        sharing.classpath,
        sharing.java_option,
    ]
    assert [singles[n] for n in ("master", "driver-memory")] == ["local[*]", "4g"]
    assert printed("jars-inputs") == [
        singles["excludes"],
        f"4g {singles['driver-java-options']}",
        singles["spark-defaults"],
        singles["submit-packages"],
    ]
    assert singles["spark-defaults"].endswith("pyspark/conf/spark-defaults.conf")


def _archive(conf_dir: Path, jars: str, made_for: str | None = None) -> Path:
    """A spark-defaults.conf with `jars` and an archive file made for `made_for` (default:
    the classpath of those jars)."""
    (conf_dir / "spark-defaults.conf").write_text(f"spark.jars  {jars}\n", encoding="utf-8")
    archive = conf_dir / "adlake-classes.jsa"
    archive.write_bytes(b"archive")
    classpath = archive_classpath({"spark.jars": jars}) if made_for is None else made_for
    class_archive_key_path(archive).write_text(class_archive_key(classpath), encoding="utf-8")
    return archive


def test_a_started_driver_gets_the_class_archive_only_when_made_for_its_classpath(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The factory starts the driver with the set-up's archive and its classpath first; not
    with an archive made for other jars, nor under spark-submit (the JVM runs already), nor
    when the config sets its own driver classpath."""
    monkeypatch.setenv("SPARK_CONF_DIR", str(tmp_path))
    monkeypatch.delenv("PYSPARK_GATEWAY_PORT", raising=False)
    cfg = load_config(DEFAULT_CONFIG)
    java, classpath = "spark.driver.extraJavaOptions", "spark.driver.extraClassPath"

    def launch(overrides: dict[str, str] | None = None) -> tuple[str, str | None]:
        conf = spark_conf(cfg, overrides)
        return conf[java], conf.get(classpath)

    assert launch() == ("-XX:-DontCompileHugeMethods -XX:+UseParallelGC", None)
    archive = _archive(tmp_path, "file:/m2/delta.jar, /m2/avro.jar")
    assert launch() == (
        f"-XX:-DontCompileHugeMethods -XX:+UseParallelGC -XX:SharedArchiveFile={archive}",
        f"{spark_home()}/jars/*:/m2/delta.jar:/m2/avro.jar",
    )
    assert launch({java: "-Xss4m"}) == (f"-Xss4m -XX:SharedArchiveFile={archive}",
                                        f"{spark_home()}/jars/*:/m2/delta.jar:/m2/avro.jar")  # fmt: skip
    assert launch({classpath: "/own/lib/*"}) == (
        "-XX:-DontCompileHugeMethods -XX:+UseParallelGC",
        "/own/lib/*",
    )
    _archive(tmp_path, "/m2/delta-4.5.jar,/m2/avro.jar", made_for=f"{spark_home()}/jars/*:/m2/a")
    assert launch() == ("-XX:-DontCompileHugeMethods -XX:+UseParallelGC", None)
    _archive(tmp_path, "/m2/delta.jar")
    monkeypatch.setenv("JAVA_HOME", str(tmp_path / "another-jdk"))  # made for another JVM
    assert launch() == ("-XX:-DontCompileHugeMethods -XX:+UseParallelGC", None)
    monkeypatch.delenv("JAVA_HOME")
    _archive(tmp_path, "/m2/delta.jar")
    monkeypatch.setenv("PYSPARK_GATEWAY_PORT", "40000")
    assert launch() == ("-XX:-DontCompileHugeMethods -XX:+UseParallelGC", None)


def test_spark_submit_sh_passes_the_archive_only_to_a_driver_on_this_machine(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """scripts/spark_submit.sh puts the archive's classpath first and its option in the
    driver's Java options; not when the caller submits in cluster deploy mode, where the
    driver starts on another machine that has no such file."""
    home = tmp_path / "spark"
    (home / "bin").mkdir(parents=True)
    submit = home / "bin" / "spark-submit"
    submit.write_text('#!/bin/sh\nfor a in "$@"; do echo "$a"; done\n', encoding="utf-8")
    submit.chmod(0o755)
    conf_dir = tmp_path / "conf"
    conf_dir.mkdir()
    monkeypatch.setenv("SPARK_HOME", str(home))
    monkeypatch.setenv("SPARK_CONF_DIR", str(conf_dir))
    archive = _archive(conf_dir, "/m2/delta.jar")

    def submitted(extra: str) -> list[str]:
        env = {**os.environ, "SPARK_SUBMIT_OPTS_EXTRA": extra}
        done = subprocess.run(
            ["bash", "scripts/spark_submit.sh", "jobs/bronze_ingest.py"],
            env=env, capture_output=True, text=True, check=True, timeout=120,
        )  # fmt: skip
        return done.stdout.splitlines()

    def sharing(args: list[str]) -> tuple[str | None, bool]:
        classpath = (
            args[args.index("--driver-class-path") + 1] if "--driver-class-path" in args else None
        )
        java = args[args.index("--driver-java-options") + 1]
        return classpath, f"-XX:SharedArchiveFile={archive}" in java  # fmt: skip

    assert sharing(submitted("")) == (f"{home}/jars/*:/m2/delta.jar", True)
    assert sharing(submitted("--master yarn --deploy-mode client")) == (
        f"{home}/jars/*:/m2/delta.jar",
        True,
    )
    assert sharing(submitted("--master yarn --deploy-mode cluster")) == (None, False)
    assert sharing(submitted("--deploy-mode=cluster")) == (None, False)


def test_the_suite_driver_maps_the_set_up_class_archive(spark: SparkSession) -> None:
    """Set-up's archive is made for this classpath and the driver the factory started maps
    it: HotSpot keeps a mapped archive's file in the process's memory map (and unmaps one it
    rejects)."""
    sharing = class_sharing()
    assert sharing is not None
    jvm = spark.sparkContext._jvm
    assert jvm is not None
    pid = jvm.java.lang.management.ManagementFactory.getRuntimeMXBean().getPid()
    maps = Path(f"/proc/{pid}/maps").read_text(encoding="utf-8")
    assert str(class_archive_path()) in maps
