"""The landing-data generator: determinism, exact manifest counts, requested rates, contracts.

No Spark: files are re-read with json, csv and fastavro and recounted independently.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import importlib.util
import io
import json
import random
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import fastavro
import pytest
import yaml

import adlake_datagen
from adlake.schemas import BID_REQUEST_AVRO_SCHEMA, CLICK_CONVERSION_FIELDS, CREATIVE_COLUMNS
from adlake_datagen import (
    BID_REQUESTS,
    CLICKS_CONVERSIONS,
    CREATIVES_FILE,
    IMPRESSIONS,
    MANIFEST_FILE,
    SEED_BID_REQUESTS,
    SEED_CLICKS_CONVERSIONS,
    SEED_IMPRESSIONS,
    DatagenConfig,
    DatagenConfigError,
    encode_bid_request,
    generate_landing,
    parse_timestamp_mix,
    read_manifest,
)

DAY_MS = 86_400_000
CSV_HEADER = [f.name for f in CLICK_CONVERSION_FIELDS]
N_IMPRESSIONS = 20_000
CONFIG = DatagenConfig(
    impressions=N_IMPRESSIONS,
    seed=7,
    win_rate=0.3,
    ctr=0.01,
    duplicate_rate=0.02,
    malformed_rate=0.02,
    late_rate=0.02,
    schema_drift_rate=0.01,
)


@pytest.fixture(scope="module")
def landing(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    out = tmp_path_factory.mktemp("landing")
    manifest = generate_landing(CONFIG, out)
    return out, manifest


# ----------------------------------------------------------------------------- recounting
def to_ms(value: Any) -> int:
    """Event time of any landing timestamp format, in epoch millis."""
    if isinstance(value, datetime):
        return int(value.timestamp() * 1000)
    if isinstance(value, int) or (isinstance(value, str) and value.isdigit()):
        return int(value)
    text = str(value)
    if "T" in text:
        return int(datetime.fromisoformat(text).timestamp() * 1000)
    parsed = datetime.strptime(text, "%Y-%m-%d %H:%M:%S").replace(tzinfo=timezone.utc)
    return int(parsed.timestamp() * 1000)


def format_of(value: Any) -> str:
    text = str(value)
    if isinstance(value, int) or text.isdigit():
        return "epoch_ms"
    if text.endswith("Z"):
        return "iso_utc"
    return "iso_offset" if "T" in text else "plain"


@dataclass
class Recount:
    records: int = 0
    seed_records: int = 0
    clean_records: int = 0
    duplicate: int = 0
    late: int = 0
    schema_drift: int = 0
    malformed: Counter[str] = field(default_factory=Counter)
    timestamp_formats: Counter[str] = field(default_factory=Counter)
    clicks: int = 0
    conversions: int = 0

    def clean(self, ts: Any, entry: dict[str, Any], drift: bool = False) -> None:
        self.clean_records += 1
        self.late += to_ms(ts) <= entry["window_start_ms"] - DAY_MS
        self.schema_drift += drift

    def assert_matches(self, entry: dict[str, Any], path: str) -> None:
        got = {
            "records": self.records,
            "seed_records": self.seed_records,
            "clean_records": self.clean_records,
            "duplicate": self.duplicate,
            "late": self.late,
            "malformed": {k: self.malformed[k] for k in entry["defects"]["malformed"]},
        }
        expected = {
            "records": entry["records"],
            "seed_records": entry["seed_records"],
            "clean_records": entry["clean_records"],
            "duplicate": entry["defects"]["duplicate"],
            "late": entry["defects"]["late"],
            "malformed": entry["defects"]["malformed"],
        }
        if "schema_drift" in entry["defects"]:
            got["schema_drift"] = self.schema_drift
            expected["schema_drift"] = entry["defects"]["schema_drift"]
        if "timestamp_formats" in entry:
            got["timestamp_formats"] = {
                k: self.timestamp_formats[k] for k in entry["timestamp_formats"]
            }
            expected["timestamp_formats"] = entry["timestamp_formats"]
        assert got == expected, path


def entries(manifest: dict[str, Any], source: str) -> Iterator[tuple[str, dict[str, Any]]]:
    for path, entry in manifest["files"].items():
        if entry["source"] == source:
            yield path, entry


def read_lines(path: Path) -> list[str]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as fo:
        return fo.read().splitlines()


def recount_impressions(out: Path, manifest: dict[str, Any]) -> dict[str, Recount]:
    seeds = {json.dumps(dict(s)) for s in SEED_IMPRESSIONS}
    seen: set[str] = set()
    counts: dict[str, Recount] = {}
    for path, entry in entries(manifest, IMPRESSIONS):
        c = counts[path] = Recount()
        for line in read_lines(out / path):
            c.records += 1
            if line in seeds:
                c.seed_records += 1
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError:
                c.malformed["broken_json"] += 1
                continue
            if (
                isinstance(obj["user_id"], dict)
                or isinstance(obj["creative_id"], list)
                or isinstance(obj.get("cost"), str)
            ):
                c.malformed["wrong_type"] += 1
                continue
            if line in seen:
                c.duplicate += 1
                continue
            seen.add(line)
            c.clean(obj["timestamp"], entry, drift=adlake_datagen.DRIFT_JSON_FIELD in obj)
            c.timestamp_formats[format_of(obj["timestamp"])] += 1
    return counts


def read_csv(path: Path) -> tuple[list[str], list[list[str]]]:
    with open(path, encoding="utf-8", newline="") as fo:
        header, *rows = list(csv.reader(fo))
    return header, rows


def is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def recount_clicks_conversions(out: Path, manifest: dict[str, Any]) -> dict[str, Recount]:
    seeds = [[s.get(c, "") for c in CSV_HEADER] for s in SEED_CLICKS_CONVERSIONS]
    seen: set[str] = set()
    counts: dict[str, Recount] = {}
    for path, entry in entries(manifest, CLICKS_CONVERSIONS):
        c = counts[path] = Recount()
        header, rows = read_csv(out / path)
        assert header == entry["columns"]
        for row in rows:
            c.records += 1
            if row in seeds:
                c.seed_records += 1
            elif len(row) < len(header):
                c.malformed["missing_columns"] += 1
            elif len(row) > len(header):
                c.malformed["extra_columns"] += 1
            elif not row[2].isdigit() or not (row[6] == "" or is_number(row[6])):
                c.malformed["wrong_type"] += 1
            elif row[0] in seen:
                c.duplicate += 1
            else:
                seen.add(row[0])
                c.clean(row[1], entry, drift=len(header) > len(CSV_HEADER))
                c.timestamp_formats[format_of(row[1])] += 1
                if row[5].strip().lower() == "click":
                    c.clicks += 1
                else:
                    c.conversions += 1
    return counts


def read_avro(path: Path) -> tuple[list[dict[str, Any]], Exception | None]:
    """Records up to the first unreadable block, and the error that stopped the reader."""
    records: list[dict[str, Any]] = []
    with open(path, "rb") as fo:
        try:
            for record in fastavro.reader(fo):
                assert isinstance(record, dict)
                records.append(record)
        except Exception as exc:  # a truncated file may fail in several ways
            return records, exc
    return records, None


def recount_bid_requests(out: Path, manifest: dict[str, Any]) -> dict[str, Recount]:
    seeds = [dict(s) for s in SEED_BID_REQUESTS]
    seen: set[str] = set()
    counts: dict[str, Recount] = {}
    for path, entry in entries(manifest, BID_REQUESTS):
        records, error = read_avro(out / path)
        if entry["truncated"]:
            assert error is not None, path
            assert len(records) == entry["readable_records"] < entry["records"]
            continue
        assert error is None, path
        c = counts[path] = Recount()
        for record in records:
            c.records += 1
            if record in seeds:
                c.seed_records += 1
            elif record["request_id"] in seen:
                c.duplicate += 1
            else:
                seen.add(record["request_id"])
                c.clean(record["timestamp"], entry)
    return counts


def all_impressions(out: Path, manifest: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(file, record) of the first sending of each generated impression with contract types."""
    seen: set[str] = set()
    for path, _ in entries(manifest, IMPRESSIONS):
        for line in read_lines(out / path):
            try:
                obj = json.loads(line)
            except json.JSONDecodeError:
                continue
            impression_id = obj.get("impression_id")
            if impression_id is None or impression_id in seen:
                continue  # seed records and re-sent duplicates
            seen.add(impression_id)
            wrong_type = (
                isinstance(obj["user_id"], dict)
                or isinstance(obj["creative_id"], list)
                or isinstance(obj.get("cost"), str)
            )
            if not wrong_type:
                yield path, obj


def hashes(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


# ----------------------------------------------------------------------------- manifest
def test_manifest_counts_equal_recount_of_impressions(
    landing: tuple[Path, dict[str, Any]],
) -> None:
    out, manifest = landing
    for path, recount in recount_impressions(out, manifest).items():
        recount.assert_matches(manifest["files"][path], path)


def test_manifest_counts_equal_recount_of_clicks_conversions(
    landing: tuple[Path, dict[str, Any]],
) -> None:
    out, manifest = landing
    for path, recount in recount_clicks_conversions(out, manifest).items():
        entry = manifest["files"][path]
        recount.assert_matches(entry, path)
        assert (recount.clicks, recount.conversions) == (entry["clicks"], entry["conversions"])


def test_manifest_counts_equal_recount_of_bid_requests(
    landing: tuple[Path, dict[str, Any]],
) -> None:
    out, manifest = landing
    recounts = recount_bid_requests(out, manifest)
    assert len(recounts) == manifest["totals"][BID_REQUESTS]["files"] - 1  # one truncated
    for path, recount in recounts.items():
        recount.assert_matches(manifest["files"][path], path)


def test_manifest_totals_are_sums_and_records_add_up(
    landing: tuple[Path, dict[str, Any]],
) -> None:
    _, manifest = landing
    assert manifest == read_manifest(landing[0])
    for path, entry in manifest["files"].items():
        defects = entry.get("defects", {"duplicate": 0, "malformed": {}})
        parts = entry["seed_records"] + entry["clean_records"] + defects["duplicate"]
        assert entry["records"] == parts + sum(defects["malformed"].values()), path
    for source in (IMPRESSIONS, CLICKS_CONVERSIONS, BID_REQUESTS):
        files = [e for _, e in entries(manifest, source)]
        total = manifest["totals"][source]
        assert total["files"] == len(files) == 4
        assert total["records"] == sum(e["records"] for e in files)
        for kind in ("duplicate", "late"):
            assert total["defects"][kind] == sum(e["defects"][kind] for e in files)
    everything = manifest["totals"]["all"]
    assert everything["files"] == len(manifest["files"]) == 13
    assert everything["records"] == sum(e["records"] for e in manifest["files"].values())
    assert manifest["arguments"]["impressions"] == N_IMPRESSIONS
    assert manifest["totals"][BID_REQUESTS]["truncated_files"] == 1
    assert manifest["files"]["bid_requests/part-00003.avro"]["truncated"] is True


# ----------------------------------------------------------------------------- rates
def test_requested_rates_are_produced(landing: tuple[Path, dict[str, Any]]) -> None:
    _, manifest = landing
    imp = manifest["totals"][IMPRESSIONS]
    clean = imp["clean_records"]
    assert clean == N_IMPRESSIONS
    defects = imp["defects"]
    assert defects["duplicate"] / clean == pytest.approx(CONFIG.duplicate_rate, rel=0.2)
    malformed = sum(defects["malformed"].values())
    assert malformed / clean == pytest.approx(CONFIG.malformed_rate, rel=0.2)
    assert min(defects["malformed"].values()) > 0
    assert defects["late"] / clean == pytest.approx(CONFIG.late_rate, rel=0.2)
    assert defects["schema_drift"] / clean == pytest.approx(CONFIG.schema_drift_rate, rel=0.3)
    clicks = manifest["totals"][CLICKS_CONVERSIONS]["clicks"]
    assert clicks / clean == pytest.approx(CONFIG.ctr, rel=0.25)
    bids = manifest["totals"][BID_REQUESTS]
    won = clean * 0.95  # impressions bought in auctions (the rest are direct buys)
    assert bids["clean_records"] / won == pytest.approx(1 / CONFIG.win_rate, rel=0.05)
    formats = imp["timestamp_formats"]
    assert formats["plain"] / clean == pytest.approx(0.55, rel=0.1)
    assert all(formats[name] > 0 for name in adlake_datagen.TIMESTAMP_FORMATS)


def test_click_and_conversion_events_look_like_the_contract(
    landing: tuple[Path, dict[str, Any]],
) -> None:
    out, manifest = landing
    kinds: Counter[str] = Counter()
    variants = 0
    for path, _ in entries(manifest, CLICKS_CONVERSIONS):
        header, rows = read_csv(out / path)
        for row in rows:
            well_formed = len(row) == len(header) and row[2].isdigit()
            if not well_formed or not row[0] or not (row[6] == "" or is_number(row[6])):
                continue  # seed and malformed rows
            kind = row[5].strip().lower()
            kinds[kind] += 1
            variants += row[5] != kind
            if kind == "click":
                assert row[6] == ""
    assert set(kinds) == {"click", "signup", "purchase", "install", "lead"}
    assert 0 < variants < 0.1 * sum(kinds.values())


# ----------------------------------------------------------------------------- contracts
def test_seed_records_are_written_verbatim_first(landing: tuple[Path, dict[str, Any]]) -> None:
    out, _ = landing
    lines = read_lines(out / "impressions/part-00000.jsonl")
    assert lines[:2] == [
        '{"creative_id": 1, "user_id": 101, "timestamp": "2023-11-01 10:00:00", '
        '"website": "example.com"}',
        '{"creative_id": 2, "user_id": 102, "timestamp": "2023-11-01 10:05:00", '
        '"website": "example.org"}',
    ]
    csv_lines = (out / "clicks_conversions/part-00000.csv").read_text().splitlines()
    assert csv_lines[:3] == [
        "event_id,timestamp,user_id,campaign_id,creative_id,conversion_type,revenue",
        ",2023-11-01 10:02:00,101,1,,signup,",
        ",2023-11-01 10:06:00,102,2,,purchase,",
    ]
    records, _ = read_avro(out / "bid_requests/part-00000.avro")
    assert records[:2] == [dict(s) for s in SEED_BID_REQUESTS]
    assert records[0]["user_info"] == {"user_id": 201, "location": "USA"}
    assert records[1]["auction_details"] == {"auction_id": 2, "bid_amount": 0.15}


def test_no_seed_records_when_disabled(tmp_path: Path) -> None:
    generate_landing(DatagenConfig(impressions=50, include_seed_records=False), tmp_path)
    manifest = read_manifest(tmp_path)
    assert manifest["totals"]["all"]["seed_records"] == 4  # the seed creatives only
    first = json.loads(read_lines(tmp_path / "impressions/part-00000.jsonl")[0])
    assert first["impression_id"] == "imp-1"


def test_references_between_sources_resolve(landing: tuple[Path, dict[str, Any]]) -> None:
    out, manifest = landing
    header, rows = read_csv(out / CREATIVES_FILE)
    assert tuple(header) == CREATIVE_COLUMNS
    creative_campaign = {int(r[0]): int(r[1]) for r in rows}
    assert {1: 1, 2: 2}.items() <= creative_campaign.items()
    assert {3, 4} <= creative_campaign.keys()
    campaigns_with_creatives = set(creative_campaign.values())

    bid_auctions: dict[str, set[int]] = {}
    for path, _ in entries(manifest, BID_REQUESTS):
        records, _ = read_avro(out / path)
        bid_auctions[path.split("/")[1].split(".")[0]] = {
            r["auction_details"]["auction_id"] for r in records
        }
    truncated = {
        p.split("/")[1].split(".")[0] for p, e in entries(manifest, BID_REQUESTS) if e["truncated"]
    }
    checked = 0
    for path, obj in all_impressions(out, manifest):
        assert obj["creative_id"] >= adlake_datagen.FIRST_CREATIVE_ID
        assert obj["user_id"] >= adlake_datagen.FIRST_USER_ID
        if "campaign_id" in obj:
            assert creative_campaign[obj["creative_id"]] == obj["campaign_id"]
        part = path.split("/")[1].split(".")[0]
        if "auction_id" in obj and part not in truncated:
            assert obj["auction_id"] in bid_auctions[part]  # won bid in the same arrival
            checked += 1
    assert checked > N_IMPRESSIONS / 2

    for path, _ in entries(manifest, CLICKS_CONVERSIONS):
        header, rows = read_csv(out / path)
        for row in rows:
            if len(row) == len(header) and row[3].isdigit():
                assert int(row[3]) in campaigns_with_creatives
                if row[4]:
                    assert creative_campaign[int(row[4])] == int(row[3])


def test_raw_forms_of_websites_and_countries_are_mixed(
    landing: tuple[Path, dict[str, Any]],
) -> None:
    out, manifest = landing
    websites = Counter[str]()
    countries = Counter[str]()
    for _, obj in all_impressions(out, manifest):
        websites[obj["website"]] += 1
        if "country" in obj:
            countries[obj["country"]] += 1
    assert any(w.startswith("https://www.") and ":443/path?q=" in w for w in websites)
    assert any(w.startswith("WWW.") and w.endswith("/") for w in websites)
    assert any(w.isupper() for w in websites)
    assert {"US", "USA", "United States", "Germany", "DEU"} <= countries.keys()
    top_share = websites.most_common(1)[0][1] / sum(websites.values())
    assert top_share > 0.02  # skewed, not uniform over the sites


def test_late_records_are_older_than_their_window(landing: tuple[Path, dict[str, Any]]) -> None:
    out, manifest = landing
    entry = manifest["files"]["impressions/part-00002.jsonl"]
    ages = [
        entry["window_start_ms"] - to_ms(obj["timestamp"])
        for path, obj in all_impressions(out, manifest)
        if path.endswith("part-00002.jsonl")
    ]
    late = [a for a in ages if a >= DAY_MS]
    assert len(late) == entry["defects"]["late"] > 0
    assert all(a <= 3 * DAY_MS for a in late)


def test_csv_schema_drift_adds_a_column_to_one_later_file(
    landing: tuple[Path, dict[str, Any]],
) -> None:
    _, manifest = landing
    columns = [e["columns"] for _, e in entries(manifest, CLICKS_CONVERSIONS)]
    assert columns[0] == CSV_HEADER
    assert columns.count([*CSV_HEADER, "channel"]) == 1


def test_bid_encoder_matches_fastavro() -> None:
    parsed = fastavro.parse_schema(BID_REQUEST_AVRO_SCHEMA)
    rng = random.Random(3)
    for i in range(300):
        record = {
            "request_id": None if i % 7 == 0 else f"req-{rng.randrange(10**12)}",
            "timestamp": None if i % 5 == 0 else rng.randrange(-(10**13), 10**13),
            "user_info": {"user_id": rng.randrange(-(2**62), 2**62), "location": "Côte"},
            "auction_details": {"auction_id": rng.randrange(10**9), "bid_amount": rng.random()},
            "ad_targeting": {"creative_id": rng.randrange(10**6), "website": None},
            "device": None if i % 3 == 0 else {"device_type": "ctv", "os": None},
        }
        expected = io.BytesIO()
        fastavro.schemaless_writer(expected, parsed, record)
        assert encode_bid_request(record) == expected.getvalue()


# ----------------------------------------------------------------------------- determinism
@pytest.mark.parametrize("use_gzip", [False, True])
def test_same_seed_gives_byte_identical_files(tmp_path: Path, use_gzip: bool) -> None:
    config = DatagenConfig(impressions=3000, files=3, seed=11, gzip=use_gzip)
    generate_landing(config, tmp_path / "a")
    generate_landing(config, tmp_path / "b")
    first, second = hashes(tmp_path / "a"), hashes(tmp_path / "b")
    assert first == second
    assert len(first) == 3 * 3 + 2  # three sources x three files, reference, manifest
    generate_landing(
        DatagenConfig(impressions=3000, files=3, seed=12, gzip=use_gzip), tmp_path / "c"
    )
    third = hashes(tmp_path / "c")
    assert third.keys() == first.keys()
    data_files = [k for k in first if k.startswith(("impressions", "clicks", "bid"))]
    assert all(first[k] != third[k] for k in data_files)


def test_gzip_impressions_are_readable(tmp_path: Path) -> None:
    manifest = generate_landing(DatagenConfig(impressions=500, files=2, gzip=True), tmp_path)
    paths = sorted((tmp_path / IMPRESSIONS).iterdir())
    assert [p.name for p in paths] == ["part-00000.jsonl.gz", "part-00001.jsonl.gz"]
    for path in paths:
        entry = manifest["files"][f"{IMPRESSIONS}/{path.name}"]
        assert len(gzip.decompress(path.read_bytes()).decode().splitlines()) == entry["records"]


def test_rerun_keeps_identical_files_and_removes_stale_ones(tmp_path: Path) -> None:
    generate_landing(DatagenConfig(impressions=400, files=3), tmp_path)
    mtimes = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.is_file()}
    generate_landing(DatagenConfig(impressions=400, files=3), tmp_path)
    assert {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.is_file()} == mtimes

    generate_landing(DatagenConfig(impressions=400, files=2), tmp_path)
    assert sorted(p.name for p in (tmp_path / BID_REQUESTS).iterdir()) == [
        "part-00000.avro",
        "part-00001.avro",
    ]
    assert not (tmp_path / adlake_datagen.STAGING_DIR).exists()
    assert set(read_manifest(tmp_path)["files"]) == {
        p.relative_to(tmp_path).as_posix()
        for p in tmp_path.rglob("*")
        if p.is_file() and p.name != MANIFEST_FILE
    }


@pytest.mark.parametrize(("impressions", "files"), [(0, 1), (1, 1), (7, 4)])
def test_tiny_runs_are_consistent(tmp_path: Path, impressions: int, files: int) -> None:
    manifest = generate_landing(DatagenConfig(impressions=impressions, files=files), tmp_path)
    assert manifest["totals"][IMPRESSIONS]["clean_records"] == impressions
    assert manifest["totals"][BID_REQUESTS]["truncated_files"] == (1 if files >= 2 else 0)
    recount_impressions(tmp_path, manifest)  # every file parses line by line
    recount_bid_requests(tmp_path, manifest)


# ----------------------------------------------------------------------------- arguments
def test_invalid_arguments_name_the_knob() -> None:
    with pytest.raises(DatagenConfigError, match="ctr"):
        DatagenConfig(ctr=1.5).resolved()
    with pytest.raises(DatagenConfigError, match="truncated_avro_files"):
        DatagenConfig(files=2, truncated_avro_files=3).resolved()
    with pytest.raises(DatagenConfigError, match="timestamp_mix"):
        parse_timestamp_mix("plain=1,unix=2")
    assert parse_timestamp_mix("plain=3,epoch_ms=1") == {
        "plain": 0.75,
        "iso_offset": 0.0,
        "iso_utc": 0.0,
        "epoch_ms": 0.25,
    }


def load_cli() -> Any:
    """scripts/ is not a package; load the CLI module from its file."""
    path = Path(__file__).resolve().parents[1] / "scripts" / "generate_data.py"
    spec = importlib.util.spec_from_file_location("generate_data", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cli_writes_to_out_or_to_the_config_landing_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cli = load_cli()
    args = ["--impressions", "200", "--files", "2", "--seed", "5", "--start-date", "2026-12-01"]
    assert cli.main(["--out", str(tmp_path / "direct"), *args]) == 0
    manifest = read_manifest(tmp_path / "direct")
    assert manifest["arguments"]["start_date"] == date(2026, 12, 1).isoformat()
    assert manifest["arguments"]["seed"] == 5

    config = tmp_path / "conf.yaml"
    config.write_text(yaml.safe_dump({"paths": {"landing": "./data/landing"}}))
    monkeypatch.chdir(tmp_path)
    assert cli.main(["--config", str(config), *args]) == 0
    assert hashes(tmp_path / "data/landing") == hashes(tmp_path / "direct")
    assert cli.main(["--out", str(tmp_path / "x"), "--ctr", "2"]) == 2


def test_end_now_rounds_down_to_the_half_hour(tmp_path: Path) -> None:
    cli = load_cli()
    now = datetime(2026, 11, 29, 22, 47, 13, tzinfo=timezone.utc)
    assert cli.parse_end("now", now) == datetime(2026, 11, 29, 22, 30, tzinfo=timezone.utc)
    end = cli.parse_end("2026-11-29T10:15:00")
    assert end == datetime(2026, 11, 29, 10, 15, tzinfo=timezone.utc)
    args = ["--impressions", "300", "--files", "2", "--days", "2", "--end", end.isoformat()]
    assert cli.main(["--out", str(tmp_path), *args]) == 0
    entries = read_manifest(tmp_path)["files"].values()
    assert max(e["window_end_ms"] for e in entries if "window_end_ms" in e) == to_ms(end)
    assert min(e["window_start_ms"] for e in entries if "window_start_ms" in e) == to_ms(
        end - timedelta(days=2)
    )


def test_truncated_copy_is_unreadable_and_its_original_complete(tmp_path: Path) -> None:
    config = DatagenConfig(
        impressions=3000, files=2, truncated_avro_files=0, truncated_avro_copies=1
    )
    manifest = generate_landing(config, tmp_path)
    original, copy = "bid_requests/part-00001.avro", "bid_requests/part-00001.retry.avro"
    entry = manifest["files"][copy]
    assert entry["copy_of"] == original and entry["truncated"]
    assert entry["records"] == entry["defects"]["duplicate"] == entry["readable_records"]
    full, cut = (tmp_path / original).read_bytes(), (tmp_path / copy).read_bytes()
    assert full.startswith(cut) and len(cut) == entry["truncated_at_byte"] < len(full)
    with open(tmp_path / original, "rb") as fo:
        assert sum(1 for _ in fastavro.reader(fo)) == manifest["files"][original]["records"]
    with open(tmp_path / copy, "rb") as fo, pytest.raises(Exception):  # noqa: B017
        list(fastavro.reader(fo))


def test_by_default_nearly_every_bid_request_serves_an_impression(tmp_path: Path) -> None:
    """The bid feed is the auctions won; in real RTB nearly every won auction renders."""
    generate_landing(DatagenConfig(impressions=3000, truncated_avro_files=0), tmp_path)
    served = set()
    for path in (tmp_path / IMPRESSIONS).glob("*.jsonl"):
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                served.add(json.loads(line).get("auction_id"))
            except (json.JSONDecodeError, AttributeError):
                continue
    bids = set()
    for path in (tmp_path / BID_REQUESTS).glob("*.avro"):
        with open(path, "rb") as fo:
            bids |= {r["auction_details"]["auction_id"] for r in fastavro.reader(fo)}
    unserved = len(bids - served) / len(bids)
    assert 0.01 < unserved < 0.05
