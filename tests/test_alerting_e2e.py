"""End to end: a real Prometheus scrapes a running bronze stream, a corrupt file lands, and
Alertmanager delivers AdLakeQuarantineRatioHigh to a webhook served by this test.

Prometheus runs the project's conf/prometheus/alerts.yml unchanged; its scrape config and the
Alertmanager routing are the project's files with only targets and timings made local and
fast. Needs `prometheus` and `alertmanager` on PATH (scripts/setup_prometheus.sh, run by
`make test`). Every process started here is stopped in `finally`.
"""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
import yaml
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from adlake.config import parse_config

from .conftest import config_dict_for

ROOT = Path(__file__).resolve().parents[1]
PROM_CONF = ROOT / "conf" / "prometheus"
pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(
            f"{name} is not on PATH: run `bash scripts/setup_prometheus.sh` (make test does)"
        )
    return path


class _Webhook(BaseHTTPRequestHandler):
    received: ClassVar[list[dict[str, Any]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        type(self).received.append(json.loads(body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: Any) -> None:  # keep pytest output clean
        return


@contextmanager
def _process(args: list[str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(args, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _wait(predicate: Callable[[], bool], timeout: float, what: str, logs: list[Path]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.5)
    tails = "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-2500:]}" for p in logs)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}\n{tails}")


def _query(prom_port: int, expr: str) -> list[dict[str, Any]]:
    url = f"http://127.0.0.1:{prom_port}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            result: list[dict[str, Any]] = json.loads(resp.read())["data"]["result"]
            return result
    except OSError:
        return []


def _impressions(folder: Path, name: str, good: int, bad: int) -> None:
    lines = [
        json.dumps(
            {
                "impression_id": f"{name}-{i}",
                "creative_id": 1,
                "user_id": i,
                "timestamp": "2026-11-01 10:00:00",
                "website": "example.com",
            }
        )
        for i in range(good)
    ] + [f'{{"impression_id": "{name}-bad-{i}", "user_id": ' for i in range(bad)]
    tmp = folder / f".{name}.tmp"
    tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    tmp.rename(folder / f"{name}.jsonl")  # appear whole to the file stream


def test_corrupt_input_fires_quarantine_alert_through_alertmanager(
    spark: SparkSession, tmp_path: Path
) -> None:
    prometheus, alertmanager = _binary("prometheus"), _binary("alertmanager")
    metrics_port, prom_port, am_port = _free_port(), _free_port(), _free_port()
    am_cluster_port = _free_port()

    _Webhook.received = []
    hook = ThreadingHTTPServer(("127.0.0.1", 0), _Webhook)
    threading.Thread(target=hook.serve_forever, daemon=True).start()
    hook_url = f"http://127.0.0.1:{hook.server_address[1]}/alerts"

    am_conf = yaml.safe_load((PROM_CONF / "alertmanager.yml").read_text(encoding="utf-8"))
    am_conf["route"].update(group_wait="1s", group_interval="1s")
    for receiver in am_conf["receivers"]:
        for hook_conf in receiver.get("webhook_configs", []):
            hook_conf["url"] = hook_url
    (tmp_path / "alertmanager.yml").write_text(yaml.safe_dump(am_conf), encoding="utf-8")

    prom_conf = yaml.safe_load((PROM_CONF / "prometheus.yml").read_text(encoding="utf-8"))
    prom_conf["global"].update(scrape_interval="1s", evaluation_interval="1s")
    prom_conf["rule_files"] = [str(PROM_CONF / "alerts.yml")]
    prom_conf["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] = [
        f"127.0.0.1:{am_port}"
    ]
    streaming = next(j for j in prom_conf["scrape_configs"] if j["job_name"] == "adlake_streaming")
    streaming["static_configs"] = [{"targets": [f"127.0.0.1:{metrics_port}"]}]
    prom_conf["scrape_configs"] = [streaming]
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(prom_conf), encoding="utf-8")

    data = config_dict_for(tmp_path)
    data["metrics"].update(http_host="127.0.0.1", http_port=metrics_port)
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(data), encoding="utf-8")
    cfg = parse_config(data, tmp_path)
    landing = Path(cfg.landing_path("impressions"))
    landing.mkdir(parents=True)

    logs = [tmp_path / n for n in ("job.log", "prometheus.log", "alertmanager.log")]
    am_args = [
        alertmanager,
        f"--config.file={tmp_path / 'alertmanager.yml'}",
        f"--storage.path={tmp_path / 'am-data'}",
        f"--web.listen-address=127.0.0.1:{am_port}",
        f"--cluster.listen-address=127.0.0.1:{am_cluster_port}",
    ]
    prom_args = [
        prometheus,
        f"--config.file={tmp_path / 'prometheus.yml'}",
        f"--storage.tsdb.path={tmp_path / 'prom-data'}",
        f"--web.listen-address=127.0.0.1:{prom_port}",
    ]
    job_args = [
        sys.executable, str(ROOT / "jobs" / "bronze_ingest.py"), "--config", str(config),
        "--source", "impressions", "--mode", "stream", "--trigger", "2s",
    ]  # fmt: skip
    try:
        with (
            _process(am_args, logs[2]),
            _process(prom_args, logs[1]),
            _process(job_args, logs[0]) as job,
        ):
            _impressions(landing, "good-000", good=100, bad=0)
            _wait(
                lambda: any(
                    float(r["value"][1]) >= 100
                    for r in _query(
                        prom_port, 'adlake_records_written_total{table="bronze/impressions"}'
                    )
                ),
                240,
                "Prometheus to scrape the first 100 bronze rows",
                logs,
            )
            assert not _query(prom_port, 'ALERTS{alertname="AdLakeQuarantineRatioHigh"}')

            _impressions(landing, "corrupt-001", good=20, bad=80)
            _wait(
                lambda: any(
                    a["labels"].get("alertname") == "AdLakeQuarantineRatioHigh"
                    for n in _Webhook.received
                    for a in n.get("alerts", [])
                ),
                180,
                "AdLakeQuarantineRatioHigh at the webhook",
                logs,
            )
            # The StreamingQueryListener's gauges reach Prometheus too.
            _wait(
                lambda: any(
                    float(r["value"][1]) >= 1
                    for r in _query(
                        prom_port, 'adlake_stream_batches_total{query="bronze_impressions"}'
                    )
                ),
                60,
                "the stream's progress gauges",
                logs,
            )
            job.send_signal(signal.SIGTERM)
            assert job.wait(timeout=120) == 0
    finally:
        hook.shutdown()
        hook.server_close()

    alert = next(
        a
        for n in _Webhook.received
        for a in n["alerts"]
        if a["labels"]["alertname"] == "AdLakeQuarantineRatioHigh"
    )
    assert alert["status"] == "firing"
    assert {k: alert["labels"][k] for k in ("job_name", "source", "table", "severity")} == {
        "job_name": "bronze_ingest",
        "source": "impressions",
        "table": "bronze/impressions",
        "severity": "warning",
    }
    # 80 of 200 records read so far were quarantined.
    assert "40%" in alert["annotations"]["summary"]
    assert alert["annotations"]["runbook"]

    # SIGTERM stopped the continuous stream cleanly: exit 0 (above), no run left half done.
    assert "stopping streams after the running micro-batch" in logs[0].read_text()
    file_log = spark.read.format("delta").load(cfg.table_path("ops/ingest_file_log"))
    status = {
        s: {r[0] for r in file_log.where(F.col("status") == s).select("run_seq").collect()}
        for s in ("planned", "committed")
    }
    assert status["planned"] == status["committed"]
    assert file_log.where("status = 'committed'").agg(
        F.sum("bronze_rows"), F.sum("quarantined_rows")
    ).first() == (120, 80)
    quarantine = spark.read.format("delta").load(cfg.table_path("bronze/quarantine"))
    assert {tuple(r) for r in quarantine.groupBy("reason").count().collect()} == {
        ("malformed_json", 80)
    }
    assert Path(cfg.checkpoint_path("bronze/impressions")).is_dir()
