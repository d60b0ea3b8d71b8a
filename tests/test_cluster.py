"""Cluster runs: a real Spark standalone master and worker on 127.0.0.1 (the pyspark install's
own `spark-class`), and bronze, silver and gold submitted to it as on a cluster: the library
shipped with `--py-files` (the zip `scripts/package.sh` builds), started from an empty working
directory with no PYTHONPATH, every path in the config absolute."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from adlake.config import ConfigError, load_config, parse_config
from adlake.session import spark_home
from adlake_datagen import DatagenConfig, generate_landing
from tests.conftest import config_dict_for

ROOT = Path(__file__).resolve().parents[1]
JOBS = ("bronze_ingest.py", "silver_transform.py", "gold_build.py")
# Clean generated data (no duplicates, malformed or late rows, no seed records) so every
# generated event must reach gold exactly once.
CLEAN_DATA = DatagenConfig(
    impressions=300,
    files=1,
    days=2,
    ctr=0.1,
    conversion_rate=0.3,
    duplicate_rate=0.0,
    malformed_rate=0.0,
    late_rate=0.0,
    schema_drift_rate=0.0,
    truncated_avro_files=0,
    include_seed_records=False,
)
STARTUP_TIMEOUT = 90
JOB_TIMEOUT = 600  # per job: generous, 2 shared cores can be very busy


def test_cluster_config_is_valid_and_keeps_secrets_out(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ADLAKE_BUCKET", "ads-lake")
    cfg = load_config(ROOT / "conf" / "cluster.yaml")
    assert (cfg.paths.landing, cfg.paths.lakehouse, cfg.paths.checkpoints) == (
        "s3a://ads-lake/landing",
        "s3a://ads-lake/lakehouse",
        "s3a://ads-lake/lakehouse/_checkpoints",
    )
    assert cfg.table_path("gold/campaign_daily") == "s3a://ads-lake/lakehouse/gold/campaign_daily"
    assert cfg.spark.master is None and "spark.master" not in cfg.spark.conf
    assert cfg.spark.conf["spark.ui.prometheus.enabled"] == "true"
    assert cfg.spark.conf["spark.metrics.conf.*.sink.prometheusServlet.class"] == (
        "org.apache.spark.metrics.sink.PrometheusServlet"
    )
    assert not [k for k in cfg.spark.conf if re.search(r"access\.key|secret|session\.token", k)]
    # hadoop-aws must match the Hadoop that Spark ships, jar for jar.
    (client_api,) = (spark_home() / "jars").glob("hadoop-client-api-*.jar")
    hadoop_version = client_api.name.removeprefix("hadoop-client-api-").removesuffix(".jar")
    assert f"org.apache.hadoop:hadoop-aws:{hadoop_version}" in cfg.jvm.packages
    # Everything else is the local config's: the same rules, thresholds and packages.
    local = load_config(ROOT / "conf" / "local.yaml")
    assert set(local.jvm.packages) <= set(cfg.jvm.packages)
    assert set(local.jvm.excludes) <= set(cfg.jvm.excludes)
    assert (cfg.silver, cfg.quality) == (local.silver, local.quality)


def test_cluster_config_without_its_bucket_variable_names_the_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("ADLAKE_BUCKET", raising=False)
    with pytest.raises(ConfigError, match="ADLAKE_BUCKET is not set") as failed:
        load_config(ROOT / "conf" / "cluster.yaml")
    assert failed.value.key == "paths.landing"


def test_environment_variables_in_local_paths_and_their_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ADLAKE_TEST_ROOT", str(tmp_path))
    monkeypatch.delenv("ADLAKE_UNSET", raising=False)
    data = config_dict_for(tmp_path)
    data["paths"]["lakehouse"] = "${ADLAKE_TEST_ROOT}/lake"
    assert parse_config(data, Path("/")).paths.lakehouse == str(tmp_path / "lake")
    data["metrics"]["textfile_dir"] = "$ADLAKE_UNSET/metrics"
    with pytest.raises(ConfigError, match="ADLAKE_UNSET is not set") as failed:
        parse_config(data, Path("/"))
    assert failed.value.key == "metrics.textfile_dir"


def test_package_zip_holds_the_library_and_is_reproducible(tmp_path: Path) -> None:
    built = []
    for out in (tmp_path / "a", tmp_path / "b"):
        done = subprocess.run(
            ["bash", str(ROOT / "scripts" / "package.sh"), str(out)],
            env={**os.environ, "PYTHON": sys.executable}, capture_output=True, text=True,
            check=True,
        )  # fmt: skip
        built.append(Path(done.stdout.strip()))
    assert built[0].name == "adlake-0.1.0.zip"
    assert built[0].read_bytes() == built[1].read_bytes()
    with zipfile.ZipFile(built[0]) as zf:
        names = set(zf.namelist())
    sources = {
        str(p.relative_to(ROOT / "lib"))
        for p in (ROOT / "lib" / "adlake").rglob("*.py")
        if "__pycache__" not in p.parts
    }
    assert names == sources


def assert_gold_matches_clean_data(
    spark: SparkSession, lakehouse: str, manifest: dict[str, Any]
) -> None:
    """Gold built from CLEAN_DATA holds every generated event once, and every conversion's
    credits sum to 1 under each of the six attribution models."""
    totals = manifest["totals"]
    daily = spark.read.format("delta").load(f"{lakehouse}/gold/campaign_daily")
    sums = daily.agg(
        F.sum("impressions").alias("impressions"),
        F.sum("clicks").alias("clicks"),
        F.sum("conversions").alias("conversions"),
    ).first()
    assert sums is not None
    assert (sums["impressions"], sums["clicks"], sums["conversions"]) == (
        totals["impressions"]["records"],
        totals["clicks_conversions"]["clicks"],
        totals["clicks_conversions"]["conversions"],
    )
    funnel = spark.read.format("delta").load(f"{lakehouse}/gold/bid_funnel_daily")
    assert funnel.agg(F.sum("bid_requests")).first()[0] == totals["bid_requests"]["records"]
    # Every conversion's credits sum to 1 under each of the six models.
    attribution = spark.read.format("delta").load(f"{lakehouse}/gold/conversion_attribution")
    credits = {
        row["model"]: (row["conversions"], row["credit"])
        for row in attribution.groupBy("model")
        .agg(
            F.countDistinct("conversion_id").alias("conversions"),
            F.round(F.sum("credit").cast("double"), 6).alias("credit"),
        )
        .collect()
    }
    conversions = totals["clicks_conversions"]["conversions"]
    assert conversions > 0
    assert credits == {
        model: (conversions, float(conversions))
        for model in ("first_touch", "last_touch", "linear", "markov", "position_based",
                      "time_decay")
    }  # fmt: skip


def _java_available() -> bool:
    java_home = os.environ.get("JAVA_HOME")
    return shutil.which("java") is not None or bool(
        java_home and (Path(java_home) / "bin" / "java").is_file()
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _wait_for_line(log: Path, pattern: str, proc: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        text = log.read_text(encoding="utf-8", errors="replace") if log.exists() else ""
        if re.search(pattern, text):
            return
        if proc.poll() is not None:
            raise AssertionError(f"{what} exited with {proc.returncode}:\n{text[-3000:]}")
        time.sleep(0.5)
    raise AssertionError(f"{what} not ready after {STARTUP_TIMEOUT}s:\n{log.read_text()[-3000:]}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the daemon's process group (spark-class execs java in it), SIGKILL if needed."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=20)
    except ProcessLookupError:
        pass


@contextmanager
def standalone_cluster(work: Path, env: dict[str, str]) -> Iterator[str]:
    """A master and one worker (1 core, 1g) on 127.0.0.1; yields the master URL. Both daemons
    are stopped whatever happens, including a failed start."""
    spark_class = str(spark_home() / "bin" / "spark-class")
    port = _free_port()
    url = f"spark://127.0.0.1:{port}"
    procs: list[subprocess.Popen[bytes]] = []

    def start(name: str, args: list[str]) -> tuple[subprocess.Popen[bytes], Path]:
        log = work / f"{name}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [spark_class, *args], cwd=work, env=env, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: stopped as one
            )  # fmt: skip
        procs.append(proc)
        return proc, log

    try:
        master, master_log = start(
            "master",
            ["org.apache.spark.deploy.master.Master",
             "--host", "127.0.0.1", "--port", str(port), "--webui-port", "0"],
        )  # fmt: skip
        _wait_for_line(master_log, r"I have been elected leader", master, "master")
        worker, worker_log = start(
            "worker",
            ["org.apache.spark.deploy.worker.Worker",
             "--host", "127.0.0.1", "--port", "0", "--webui-port", "0",
             "--cores", "1", "--memory", "1g", "--work-dir", str(work / "worker"), url],
        )  # fmt: skip
        _wait_for_line(worker_log, r"Successfully registered with master", worker, "worker")
        yield url
    finally:
        for proc in reversed(procs):
            _stop(proc)


@pytest.mark.slow
def test_bronze_silver_gold_submitted_to_a_standalone_cluster(
    tmp_path: Path, spark: SparkSession
) -> None:
    if not _java_available():
        pytest.skip("no JVM: neither `java` on PATH nor JAVA_HOME (the cluster needs Java 17+)")
    # What a cluster deployment ships: the zip, the job scripts and the config, nothing else.
    app = tmp_path / "app"
    app.mkdir()
    built = subprocess.run(
        ["bash", str(ROOT / "scripts" / "package.sh"), str(app)],
        env={**os.environ, "PYTHON": sys.executable}, capture_output=True, text=True, check=True,
    )  # fmt: skip
    package = Path(built.stdout.strip().splitlines()[-1])
    assert package.is_file() and package.parent == app.resolve()
    for job in JOBS:
        shutil.copy(ROOT / "jobs" / job, app / job)
    data = tmp_path / "data"
    manifest = generate_landing(CLEAN_DATA, data / "landing")
    config_data = config_dict_for(data)
    # A cluster config: spark-submit's --master decides. A spark.master among the session
    # settings would win over it (the factory sets them on the builder), so none is there.
    config_data["spark"]["master"] = None
    del config_data["spark"]["conf"]["spark.master"]
    config = app / "cluster-test.yaml"
    config.write_text(yaml.safe_dump(config_data), encoding="utf-8")
    cfg = load_config(config)

    work = tmp_path / "cluster"
    submit_dir = tmp_path / "submit"  # empty working directory of every spark-submit
    for d in (work, submit_dir):
        d.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "SPARK_CONF_DIR")}
    env.update(
        SPARK_HOME=str(spark_home()),
        SPARK_LOCAL_IP="127.0.0.1",
        SPARK_LOG_DIR=str(work / "logs"),
        SPARK_LOCAL_DIRS=str(work / "local"),
        PYSPARK_PYTHON=sys.executable,  # the executors' Python
        PYSPARK_DRIVER_PYTHON=sys.executable,
    )
    with standalone_cluster(work, env) as master:
        for job, args in (
            ("bronze_ingest.py", ["--source", "all", "--mode", "batch"]),
            ("silver_transform.py", ["--source", "all", "--mode", "batch"]),
            ("gold_build.py", ["--table", "all"]),
        ):
            done = subprocess.run(
                [str(spark_home() / "bin" / "spark-submit"),
                 "--master", master, "--deploy-mode", "client",
                 "--py-files", str(package),
                 "--driver-memory", "1g", "--executor-memory", "512m",
                 "--total-executor-cores", "1",
                 "--conf", "spark.ui.enabled=false",
                 "--conf", "spark.driver.host=127.0.0.1",
                 str(app / job), "--config", str(config), *args],
                cwd=submit_dir, env=env, capture_output=True, text=True, timeout=JOB_TIMEOUT,
            )  # fmt: skip
            output = done.stdout[-3000:] + done.stderr[-5000:]
            assert done.returncode == 0, f"{job}:\n{output}"
            # The code came from the shipped zip (spark-submit passes the Python driver's
            # stderr, where the jobs log, through to its stdout).
            assert f"adlake from {package}/adlake\n" in done.stdout, f"{job}:\n{output}"
        # Each of the three applications ran an executor on the worker.
        apps = {p.parent.parent.name for p in (work / "worker").glob("app-*/*/stderr")}
        assert len(apps) == 3, f"applications with an executor on the worker: {sorted(apps)}"

    assert_gold_matches_clean_data(spark, cfg.paths.lakehouse, manifest)
