"""Object storage: bronze -> silver -> gold with every path (landing, tables, checkpoints,
leases) on `s3a://`, against an S3-compatible server (moto's server mode) on 127.0.0.1, with
conf/cluster.yaml's S3A settings and the jars `make setup-s3` resolved."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from pyspark.sql import SparkSession

from adlake.session import spark_home
from adlake_datagen import generate_landing
from tests.test_cluster import (
    CLEAN_DATA,
    ROOT,
    _free_port,
    _java_available,
    assert_gold_matches_clean_data,
)

BUCKET = "adlake-test"
# One process for all three stages, every file system call a round trip to the local server.
S3A_TIMEOUT = 600
# moto accepts any key; these only prove the credentials come from the environment.
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "adlake-test-key",
    "AWS_SECRET_ACCESS_KEY": "adlake-test-secret",
}
# scripts/setup_s3.sh writes the S3A jars here (a Spark conf directory of their own).
CLUSTER_CONF_DIR = Path(sys.prefix) / "spark-conf-cluster"


def _s3a_config(endpoint: str, tmp_path: Path) -> dict[str, Any]:
    """conf/cluster.yaml pointed at the local endpoint, sized for a test."""
    data: dict[str, Any] = yaml.safe_load((ROOT / "conf" / "cluster.yaml").read_text())
    data["spark"]["conf"].update(
        {
            "spark.hadoop.fs.s3a.endpoint": endpoint,
            "spark.hadoop.fs.s3a.endpoint.region": "us-east-1",
            "spark.hadoop.fs.s3a.path.style.access": True,
            "spark.hadoop.fs.s3a.connection.ssl.enabled": False,
            "spark.sql.shuffle.partitions": 2,
            "spark.databricks.delta.snapshotPartitions": 2,
            "spark.ui.enabled": False,
        }
    )
    data["metrics"].update(http_port=0, textfile_dir=str(tmp_path / "metrics"))
    return data


@pytest.mark.slow
def test_bronze_silver_gold_with_every_path_on_s3a(tmp_path: Path, spark: SparkSession) -> None:
    if not _java_available():
        pytest.skip("no JVM: neither `java` on PATH nor JAVA_HOME")
    if not (CLUSTER_CONF_DIR / "spark-defaults.conf").is_file():
        reason = f"S3A jars not set up ({CLUSTER_CONF_DIR}): run `make setup-s3`"
        if os.environ.get("CI"):  # `make test` runs the set-up: a skip in CI would hide a break
            pytest.fail(reason)
        pytest.skip(reason)
    import boto3
    from moto.server import ThreadedMotoServer

    port = _free_port()
    endpoint = f"http://127.0.0.1:{port}"
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        s3 = boto3.client(
            "s3", endpoint_url=endpoint, region_name="us-east-1",
            aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        )  # fmt: skip
        s3.create_bucket(Bucket=BUCKET)
        landing = tmp_path / "landing"
        manifest = generate_landing(CLEAN_DATA, landing)
        for path in sorted(p for p in landing.rglob("*") if p.is_file()):
            s3.upload_file(str(path), BUCKET, f"landing/{path.relative_to(landing)}")
        config = tmp_path / "s3a.yaml"
        config.write_text(yaml.safe_dump(_s3a_config(endpoint, tmp_path)), encoding="utf-8")
        run_dir = tmp_path / "run"
        run_dir.mkdir()
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("AWS_") and k not in ("PYTHONPATH", "SPARK_CONF_DIR")
        }
        env.update(
            CREDENTIALS,
            ADLAKE_BUCKET=BUCKET,
            SPARK_CONF_DIR=str(CLUSTER_CONF_DIR),
            SPARK_HOME=str(spark_home()),
            SPARK_LOCAL_IP="127.0.0.1",
            PYSPARK_PYTHON=sys.executable,
            PYSPARK_DRIVER_PYTHON=sys.executable,
            PYTHONPATH=str(ROOT / "lib"),
        )
        log = tmp_path / "run_pipeline.log"
        with log.open("wb") as out:
            done = subprocess.run(
                [str(spark_home() / "bin" / "spark-submit"), "--master", "local[2]",
                 "--driver-memory", "1g", str(ROOT / "jobs" / "run_pipeline.py"),
                 "--config", str(config), "--stages", "bronze,silver,gold"],
                cwd=run_dir, env=env, stdout=out, stderr=subprocess.STDOUT,
                timeout=S3A_TIMEOUT,
            )  # fmt: skip
        assert done.returncode == 0, log.read_text(errors="replace")[-6000:]

        keys = [
            obj["Key"]
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET)
            for obj in page.get("Contents", [])
        ]
        # Tables, the file log and the checkpoints are in the bucket; nothing was written
        # beside the job.
        for prefix in ("lakehouse/bronze/impressions/_delta_log/", "lakehouse/ops/ingest_file_log/",
                       "lakehouse/silver/impressions/_delta_log/", "lakehouse/_checkpoints/silver/",
                       "lakehouse/gold/campaign_daily/_delta_log/"):  # fmt: skip
            assert any(k.startswith(prefix) for k in keys), prefix
        # (Spark may leave an empty spark-warehouse/ in its working directory.)
        assert [p for p in run_dir.rglob("*") if p.is_file()] == []
        # Leases were taken and released on s3a: none is left behind.
        assert not [k for k in keys if "/_leases/" in k and k.endswith(".json")]
        # A copy of gold, read by the local session, holds exactly the generated events.
        copy = tmp_path / "copy"
        for key in keys:
            if key.startswith("lakehouse/gold/"):
                (copy / key).parent.mkdir(parents=True, exist_ok=True)
                s3.download_file(BUCKET, key, str(copy / key))
        assert_gold_matches_clean_data(spark, str(copy / "lakehouse"), manifest)
    finally:
        server.stop()
