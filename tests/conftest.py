"""One local SparkSession for the whole suite, built by the project's own factory."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from pyspark.sql import SparkSession

from adlake.config import DEFAULT_CONFIG, AppConfig, parse_config
from adlake.session import build_spark

TEST_SPARK_CONF = {
    "spark.master": "local[2]",
    "spark.sql.shuffle.partitions": "2",
    "spark.default.parallelism": "2",
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.driver.memory": "2g",
    "spark.sql.sources.parallelPartitionDiscovery.parallelism": "2",
}

# Interpreted expressions instead of generated code. The suite's DataFrames are a few rows,
# so code generation is nearly all of a task's work: every task of a new plan generates its
# projections' and predicates' Java source and compiles it (a JFR profile of a gold test put
# ~44 % of the executor threads' samples there). `factoryMode` is Spark's switch for its own
# tests (internal, never set in conf/). Spark computes the same values either way;
# tests/test_demo.py keeps code generation on, as the README's demo and the benchmark run.
NO_CODEGEN_CONF = {
    "spark.sql.codegen.wholeStage": "false",
    "spark.sql.codegen.factoryMode": "NO_CODEGEN",
}
SUITE_SPARK_CONF = TEST_SPARK_CONF | NO_CODEGEN_CONF

# HotSpot's first JIT tier only (C1), for the JVMs of jobs the tests start as processes. Such a
# JVM lives for seconds on a few rows and spent much of its CPU in the C2 compiler on code it
# never ran again (~15 CPU-seconds of a cold gold build; ABAB runs of a bronze and a silver
# crash test: 96 / 112 s with C2, 87 / 102 s without). The suite's own long-lived session
# keeps both tiers: with C1 only its warm gold builds took 15-18 s instead of 11-13 s.
SHORT_LIVED_JVM_OPTIONS = "-XX:TieredStopAtLevel=1"
_JAVA_OPTIONS = ("spark.driver.extraJavaOptions", "spark.executor.extraJavaOptions")


def base_config_dict() -> dict[str, Any]:
    """The embedded default config as a mutable dict."""
    data: dict[str, Any] = yaml.safe_load(DEFAULT_CONFIG.read_text(encoding="utf-8"))
    return copy.deepcopy(data)


def config_dict_for(root: Path, *, codegen: bool = False, **overrides: Any) -> dict[str, Any]:
    """conf/local.yaml as a dict with every path under `root` and dotted-key overrides applied.

    `codegen`: keep Spark's code generation and both JIT tiers on (otherwise NO_CODEGEN_CONF
    and SHORT_LIVED_JVM_OPTIONS are applied).
    """
    data = base_config_dict()
    data["paths"] = {
        "landing": str(root / "landing"),
        "lakehouse": str(root / "lakehouse"),
        "checkpoints": str(root / "checkpoints"),
    }
    conf = data["spark"]["conf"]
    conf.update(TEST_SPARK_CONF if codegen else SUITE_SPARK_CONF)
    for key in () if codegen else _JAVA_OPTIONS:  # codegen: as `make demo` runs
        conf[key] = f"{conf.get(key, '')} {SHORT_LIVED_JVM_OPTIONS}".strip()
    data["metrics"]["http_port"] = 0  # no test binds a fixed port unless it asks for one
    for dotted, value in overrides.items():
        node = data
        *parents, leaf = dotted.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return data


def config_for(root: Path, **overrides: Any) -> AppConfig:
    """conf/local.yaml with every path under `root` (one fresh lakehouse per test)."""
    return parse_config(config_dict_for(root, **overrides), root)


def write_config(root: Path, *, codegen: bool = False, **overrides: Any) -> Path:
    """The same config written as YAML, for jobs started as subprocesses."""
    path = root / "config.yaml"
    data = config_dict_for(root, codegen=codegen, **overrides)
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def spark(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SparkSession]:
    cfg = config_for(tmp_path_factory.mktemp("session"))
    launch = {key: base_config_dict()["spark"]["conf"].get(key, "") for key in _JAVA_OPTIONS}
    session = build_spark(cfg, SUITE_SPARK_CONF | launch)  # both JIT tiers (see above)
    yield session
    session.stop()


@pytest.fixture
def cfg(tmp_path: Path) -> AppConfig:
    return config_for(tmp_path)
