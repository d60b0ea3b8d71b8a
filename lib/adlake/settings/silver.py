"""The `silver` section: time zone, lateness and the validation rules (no PySpark here).

Rules are checked to be well-formed here; `adlake.silver.rules` compiles their expressions
against the rows of a batch.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from adlake.settings.base import ConfigError, ConfigSection, parse_duration

QUARANTINE = "quarantine"
WARN = "warn"
FAIL = "fail"
ACTIONS: tuple[str, ...] = (QUARANTINE, WARN, FAIL)
RULE_SOURCES: tuple[str, ...] = ("impressions", "clicks", "conversions", "bid_requests")
RULE_COLUMNS: Mapping[str, str] = {
    QUARANTINE: "_quarantine_rules",
    WARN: "_warn_rules",
    FAIL: "_fail_rules",
}
_RULE_KEYS: tuple[str, ...] = ("name", "expr", "action", "sources")
_RULE_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


@dataclass(frozen=True)
class Rule:
    """One row check: a row FAILS when `expr` is FALSE; NULL counts as a pass.

    So checks of optional fields need no null guard (`cost >= 0` passes a row without
    cost), and presence checks are written with IS NOT NULL, which is never NULL.
    `action`: quarantine (row goes to quarantine), warn (row kept, failure counted) or fail
    (the batch must fail).
    """

    name: str
    expr: str
    action: str
    sources: tuple[str, ...]


def _nonblank_str(value: object) -> bool:
    return isinstance(value, str) and bool(value.strip())


def parse_rules(raw: object, key: str = "silver.rules") -> tuple[Rule, ...]:
    """Validate a YAML-loaded list of rule mappings; errors name the offending key.

    Expressions are only checked to be non-empty text here (parsing SQL needs a session);
    `apply_rules` compiles them against the actual columns.
    """
    if not isinstance(raw, list):
        raise ConfigError(key, "expected a list of rules (use [] for none)")
    rules: list[Rule] = []
    seen: set[str] = set()
    for i, item in enumerate(raw):
        at = f"{key}[{i}]"
        if not isinstance(item, dict):
            raise ConfigError(at, "expected a mapping with keys " + ", ".join(_RULE_KEYS))
        for field in item:
            if field not in _RULE_KEYS:
                raise ConfigError(f"{at}.{field}", "unknown key; use " + ", ".join(_RULE_KEYS))
        for field in _RULE_KEYS:
            if field not in item:
                raise ConfigError(f"{at}.{field}", "missing")
        name, expr, action, sources = (item[field] for field in _RULE_KEYS)
        if not isinstance(name, str) or not _RULE_NAME.match(name):
            raise ConfigError(f"{at}.name", "expected a snake_case name like non_negative_cost")
        if name in seen:
            raise ConfigError(f"{at}.name", f"duplicate rule name {name!r}")
        if not _nonblank_str(expr):
            raise ConfigError(f"{at}.expr", "expected a non-empty SQL boolean expression")
        if action not in ACTIONS:
            raise ConfigError(f"{at}.action", f"{action!r} is not one of {', '.join(ACTIONS)}")
        if not isinstance(sources, list) or not sources:
            raise ConfigError(f"{at}.sources", "expected a non-empty list of sources")
        for source in sources:
            if source not in RULE_SOURCES:
                raise ConfigError(
                    f"{at}.sources", f"unknown source {source!r}; use {', '.join(RULE_SOURCES)}"
                )
        if len(set(sources)) != len(sources):
            raise ConfigError(f"{at}.sources", "a source is listed twice")
        seen.add(name)
        rules.append(Rule(name, str(expr).strip(), str(action), tuple(str(s) for s in sources)))
    return tuple(rules)


# Paste under `silver: rules:` in conf/<env>.yaml (indent it to fit).
DEFAULT_RULES_YAML = """\
# A row FAILS a rule when expr is FALSE; NULL counts as a pass, so checks of optional fields
# need no null guard and presence checks use IS NOT NULL. Columns: see adlake.silver.
# action: quarantine | warn | fail. sources: impressions, clicks, conversions, bid_requests.
- name: user_id_present
  expr: user_id IS NOT NULL
  action: quarantine
  sources: [impressions, clicks, conversions, bid_requests]
- name: creative_id_present
  expr: creative_id IS NOT NULL
  action: quarantine
  sources: [impressions, bid_requests]
- name: website_present          # also fails when the text has no host ("https://")
  expr: website IS NOT NULL
  action: quarantine
  sources: [impressions]
- name: timestamp_present
  expr: raw_timestamp IS NOT NULL
  action: quarantine
  sources: [impressions, clicks, conversions]
- name: campaign_id_present
  expr: campaign_id IS NOT NULL
  action: quarantine
  sources: [clicks, conversions]
- name: conversion_type_present
  expr: conversion_type IS NOT NULL
  action: quarantine
  sources: [clicks, conversions]
- name: auction_id_present
  expr: auction_id IS NOT NULL
  action: quarantine
  sources: [bid_requests]
- name: bid_amount_present
  expr: raw_bid_amount IS NOT NULL
  action: quarantine
  sources: [bid_requests]
- name: timestamp_parsable
  expr: raw_timestamp IS NULL OR event_ts IS NOT NULL
  action: quarantine
  sources: [impressions, clicks, conversions, bid_requests]
- name: not_in_future            # one hour of tolerance for producer clock skew
  expr: event_ts <= current_timestamp() + INTERVAL 1 HOUR
  action: quarantine
  sources: [impressions, clicks, conversions, bid_requests]
# Off by default: replaying old files is legitimate. Uncomment to bound history.
# - name: not_older_than_horizon
#   expr: event_ts >= current_timestamp() - INTERVAL 400 DAYS
#   action: quarantine
#   sources: [impressions, clicks, conversions, bid_requests]
- name: cost_is_number
  expr: raw_cost IS NULL OR cost IS NOT NULL
  action: quarantine
  sources: [impressions]
- name: revenue_is_number
  expr: raw_revenue IS NULL OR revenue IS NOT NULL
  action: quarantine
  sources: [conversions]
- name: bid_is_number
  expr: raw_bid_amount IS NULL OR bid_amount IS NOT NULL
  action: quarantine
  sources: [bid_requests]
- name: non_negative_cost
  expr: cost >= 0
  action: quarantine
  sources: [impressions]
- name: non_negative_revenue
  expr: revenue >= 0
  action: quarantine
  sources: [conversions]
- name: non_negative_bid
  expr: bid_amount >= 0
  action: quarantine
  sources: [bid_requests]
- name: known_conversion_type    # canonical lower case; clicks are split off before this
  expr: conversion_type IN ('signup', 'purchase', 'install', 'lead', 'add_to_cart', 'subscribe')
  action: quarantine
  sources: [conversions]
- name: creative_known           # _creative_known is added by enrich_with_creatives
  expr: _creative_known
  action: warn
  sources: [impressions, clicks, conversions, bid_requests]
- name: impression_creative_campaign_matches
  expr: _creative_campaign_matches
  action: warn
  sources: [impressions]
- name: click_creative_campaign_matches
  expr: _creative_campaign_matches
  action: warn
  sources: [clicks, conversions]
"""


@dataclass(frozen=True)
class SilverSettings:
    """Silver standardization, lateness and the validation rules."""

    source_timezone: str
    late_after_seconds: int
    rules: tuple[Rule, ...]


def _time_zone(value: str, key: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ConfigError(key, f"unknown time zone {value!r}") from exc
    return value


def parse_silver(sv: ConfigSection) -> SilverSettings:
    """Validate the `silver` section; errors name the dotted key."""
    settings = SilverSettings(
        source_timezone=_time_zone(
            sv.get("source_timezone", str, "UTC"), sv.key("source_timezone")
        ),
        late_after_seconds=parse_duration(sv.get("late_after", str, "1 day"), sv.key("late_after")),
        rules=parse_rules(sv.get("rules", list), sv.key("rules")),
    )
    sv.done()
    return settings
