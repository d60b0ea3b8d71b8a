"""The `gold` section: attribution windows, decay and weights, per-campaign overrides.

No PySpark here; `adlake.gold` applies the parameters.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from types import MappingProxyType
from typing import Any, Final

from adlake.settings.base import ConfigError, ConfigSection, parse_duration

# The attribution models gold computes (the `model` column of its tables).
LAST_TOUCH: Final = "last_touch"
FIRST_TOUCH: Final = "first_touch"
LINEAR: Final = "linear"
TIME_DECAY: Final = "time_decay"
POSITION_BASED: Final = "position_based"
MARKOV: Final = "markov"
ALL_MODELS: tuple[str, ...] = (LAST_TOUCH, FIRST_TOUCH, LINEAR, TIME_DECAY, POSITION_BASED, MARKOV)

MARKOV_CHANNELS: tuple[str, ...] = ("website", "creative_id")
_ATTRIBUTION_DURATIONS = ("click_window", "view_window", "half_life")
_ATTRIBUTION_WEIGHTS = ("first_touch_weight", "last_touch_weight")


class AttributionParamsError(ValueError):
    """An attribution parameter is out of range; the message names the parameter."""


def _whole_seconds(name: str, value: timedelta, *, positive: bool) -> int:
    if value.microseconds or value < timedelta(0) or (positive and value == timedelta(0)):
        bound = "> 0" if positive else ">= 0"
        raise AttributionParamsError(f"{name} must be a whole number of seconds {bound}: {value}")
    return int(value.total_seconds())


@dataclass(frozen=True)
class AttributionParams:
    """Windows, decay and weights of the attribution models; `params_by_campaign` overrides.

    Durations are timedeltas of whole seconds. position_based gives first_touch_weight and
    last_touch_weight to the first and last of >= 3 touches and shares the rest equally among
    the middle ones; two touches split first:last (0.5 each by default).
    """

    click_window: timedelta = timedelta(days=7)
    view_window: timedelta = timedelta(days=1)
    half_life: timedelta = timedelta(days=7)
    first_touch_weight: float = 0.4
    last_touch_weight: float = 0.4
    markov_channel: str = "website"
    params_by_campaign: Mapping[str, AttributionParams] = field(
        default_factory=lambda: MappingProxyType({}), hash=False
    )

    def __post_init__(self) -> None:
        _whole_seconds("click_window", self.click_window, positive=False)
        _whole_seconds("view_window", self.view_window, positive=False)
        _whole_seconds("half_life", self.half_life, positive=True)
        first, last = self.first_touch_weight, self.last_touch_weight
        if not (first >= 0 and last >= 0 and 0 < first + last <= 1):
            raise AttributionParamsError(
                "first_touch_weight and last_touch_weight must be >= 0 with a sum in (0, 1]: "
                f"{first}, {last}"
            )
        if self.markov_channel not in MARKOV_CHANNELS:
            raise AttributionParamsError(
                f"markov_channel must be one of {', '.join(MARKOV_CHANNELS)}: "
                f"{self.markov_channel!r}"
            )
        for campaign, override in self.params_by_campaign.items():
            key = f"params_by_campaign[{campaign!r}]"
            if not isinstance(campaign, str) or not campaign:
                raise AttributionParamsError(f"{key}: campaign ids must be non-empty strings")
            if override.params_by_campaign:
                raise AttributionParamsError(f"{key}.params_by_campaign must be empty")
            if override.markov_channel != self.markov_channel:
                raise AttributionParamsError(
                    f"{key}.markov_channel must equal markov_channel: the Markov model is one "
                    "chain over all campaigns"
                )
        frozen = MappingProxyType(dict(self.params_by_campaign))
        object.__setattr__(self, "params_by_campaign", frozen)

    @property
    def click_window_seconds(self) -> int:
        return int(self.click_window.total_seconds())

    @property
    def view_window_seconds(self) -> int:
        return int(self.view_window.total_seconds())

    @property
    def half_life_seconds(self) -> int:
        return int(self.half_life.total_seconds())


DEFAULT_PARAMS = AttributionParams()


def _attribution_fields(section: ConfigSection, defaults: dict[str, Any]) -> dict[str, Any]:
    values = dict(defaults)
    for name in _ATTRIBUTION_DURATIONS:
        if name in section.data:
            raw = section.get(name, str)
            values[name] = timedelta(seconds=parse_duration(raw, section.key(name)))
        section.seen.add(name)
    for name in _ATTRIBUTION_WEIGHTS:
        if name in section.data:
            values[name] = float(section.get(name, (int, float)))
        section.seen.add(name)
    return values


def parse_gold(gold: ConfigSection) -> AttributionParams:
    """gold.attribution (+ per-campaign overrides) -> AttributionParams, errors naming the key."""
    a = gold.section("attribution", required=False)
    base = _attribution_fields(a, {})
    channel = a.get("markov_channel", str, "website")
    campaigns = a.section("campaigns", required=False)
    overrides: dict[str, Any] = {}
    try:
        defaults = AttributionParams(markov_channel=channel, **base)
    except AttributionParamsError as exc:
        raise ConfigError(a.prefix, str(exc)) from exc
    for campaign in list(campaigns.data):
        one = campaigns.section(str(campaign))
        merged = _attribution_fields(
            one,
            {
                "click_window": defaults.click_window,
                "view_window": defaults.view_window,
                "half_life": defaults.half_life,
                "first_touch_weight": defaults.first_touch_weight,
                "last_touch_weight": defaults.last_touch_weight,
            },
        )
        one.done()
        try:
            overrides[str(campaign)] = AttributionParams(markov_channel=channel, **merged)
        except AttributionParamsError as exc:
            raise ConfigError(one.prefix, str(exc)) from exc
    campaigns.done()
    a.done()
    gold.done()
    try:
        return AttributionParams(markov_channel=channel, params_by_campaign=overrides, **base)
    except AttributionParamsError as exc:
        raise ConfigError("gold.attribution", str(exc)) from exc
