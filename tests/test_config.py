from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from adlake.config import (
    ConfigError,
    load_config,
    parse_config,
    parse_trigger,
    trigger_interval,
)
from tests.conftest import base_config_dict


def test_default_config_loads_with_absolute_local_paths() -> None:
    cfg = load_config()
    assert cfg.env == "local"
    assert Path(cfg.paths.lakehouse).is_absolute()
    assert cfg.table_path("bronze/impressions") == cfg.paths.lakehouse + "/bronze/impressions"
    assert cfg.sources["bid_requests"].path_glob == "*.avro"
    assert "io.delta:delta-spark_4.2_2.13:4.4.0" in cfg.jvm.packages


def test_uri_paths_keep_their_scheme(tmp_path: Path) -> None:
    data = base_config_dict()
    data["paths"]["lakehouse"] = "s3a://bucket/lake/"
    cfg = parse_config(data, tmp_path)
    assert cfg.table_path("bronze/quarantine") == "s3a://bucket/lake/bronze/quarantine"


@pytest.mark.parametrize(
    ("mutate", "key"),
    [
        (lambda d: d["paths"].update(landng="x"), "paths.landng"),
        (lambda d: d.update(extra=1), "extra"),
        (lambda d: d["paths"].pop("checkpoints"), "paths.checkpoints"),
        (
            lambda d: d["sources"]["impressions"].update(max_files_per_trigger=0),
            "sources.impressions.max_files_per_trigger",
        ),
        (
            lambda d: d["sources"]["impressions"].update(max_files_per_trigger="10"),
            "sources.impressions.max_files_per_trigger",
        ),
        (lambda d: d["sources"].pop("bid_requests"), "sources.bid_requests"),
        (lambda d: d["jvm"].update(packages=["io.delta:delta-spark"]), "jvm.packages"),
        (lambda d: d["stream"].update(trigger="soon"), "stream.trigger"),
        (lambda d: d["spark"].update(log_level="LOUD"), "spark.log_level"),
        (lambda d: d["spark"]["conf"].update({"spark.x": [1]}), "spark.conf.spark.x"),
    ],
)
def test_bad_config_fails_naming_the_key(mutate: Any, key: str, tmp_path: Path) -> None:
    data = base_config_dict()
    mutate(data)
    with pytest.raises(ConfigError) as err:
        parse_config(data, tmp_path)
    assert err.value.key == key
    assert f"'{key}'" in str(err.value)


def test_unreadable_and_invalid_yaml_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("paths: [unclosed", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


@pytest.mark.parametrize("value", ["available-now", "10s", "1 minute", "500ms", "2h"])
def test_valid_triggers(value: str) -> None:
    assert parse_trigger(value) == value


@pytest.mark.parametrize("value", ["", "now", "10", "ten seconds", "-5s"])
def test_invalid_triggers(value: str) -> None:
    with pytest.raises(ConfigError):
        parse_trigger(value)


@pytest.mark.parametrize(
    ("value", "spark_form"),
    [("10s", "10 seconds"), ("1 minute", "1 minutes"), ("500ms", "500 milliseconds"),
     ("2h", "2 hours"), ("3 sec", "3 seconds")],
)  # fmt: skip
def test_interval_triggers_are_given_to_spark_in_its_own_format(
    value: str, spark_form: str
) -> None:
    assert trigger_interval(value) == spark_form


def test_gold_maintenance_and_metrics_sections() -> None:
    data = base_config_dict()
    data["gold"]["attribution"]["campaigns"] = {"7": {"click_window": "14 days"}}
    cfg = parse_config(data, Path("/tmp"))
    assert cfg.attribution.click_window.days == 7
    assert cfg.attribution.params_by_campaign["7"].click_window.days == 14
    assert cfg.attribution.params_by_campaign["7"].view_window.days == 1
    assert cfg.maintenance.vacuum_retention_seconds == 7 * 86400
    assert cfg.metrics.textfile_dir == "/tmp/lakehouse/_metrics"


@pytest.mark.parametrize(
    ("path", "value", "key"),
    [
        (("gold", "attribution", "view_window"), "soon", "gold.attribution.view_window"),
        (("gold", "attribution", "half_life"), "0s", "gold.attribution"),
        (
            ("gold", "attribution", "campaigns"),
            {"7": {"colour": 1}},
            "gold.attribution.campaigns.7.colour",
        ),
        (
            ("gold", "attribution", "campaigns"),
            {"7": {"first_touch_weight": 0.9}},
            "gold.attribution.campaigns.7",
        ),
        (("maintenance", "vacuum_retention"), "1 day", "maintenance.vacuum_retention"),
        (("metrics", "http_port"), 70000, "metrics.http_port"),
    ],
)
def test_bad_gold_maintenance_metrics_keys_are_named(
    path: tuple[str, ...], value: Any, key: str
) -> None:
    data = base_config_dict()
    node = data
    for p in path[:-1]:
        node = node[p]
    node[path[-1]] = value
    with pytest.raises(ConfigError) as err:
        parse_config(data, Path("/tmp"))
    assert err.value.key == key


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("quality.freshness.min_expected_rows", -1),
        ("quality.freshness.min_expected_rows", 2.5),
        ("quality.freshness.min_expected_rows", "20"),
        ("quality.freshness.min_expected_rows", True),
        ("quality.ratios.min_rows", -100),
        ("quality.ratios.min_rows", None),
        ("quality.ratios.quarantine_ratio.min_rows", "many"),
        ("quality.ratios.unattributed_conversion_ratio.min_rows", -1),
        ("quality.freshness.min_rows", 10),  # unknown: min_rows belongs to ratios
        ("quality.ratios.min_row", 100),  # unknown
    ],
)
def test_bad_minimum_volume_names_its_key(key: str, value: Any, tmp_path: Path) -> None:
    data = base_config_dict()
    node = data
    *parents, leaf = key.split(".")
    for name in parents:
        node = node.setdefault(name, {})
    node[leaf] = value
    with pytest.raises(ConfigError) as err:
        parse_config(data, tmp_path)
    assert err.value.key == key
    assert f"'{key}'" in str(err.value)
