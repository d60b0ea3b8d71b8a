"""What the events are about: countries, devices, advertisers -> campaigns -> creatives and
websites, the users' stable profiles, and Draws, the random picks from them (heavy-tailed users
and websites, budget-weighted creatives, websites and countries as producers spell them).
"""

from __future__ import annotations

import math
import random
from bisect import bisect_right
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from adlake.schemas import CREATIVE_COLUMNS
from adlake_datagen.config import DatagenConfig
from adlake_datagen.constants import (
    CONVERSION_TYPES,
    FIRST_ADVERTISER_ID,
    FIRST_CAMPAIGN_ID,
    FIRST_CREATIVE_ID,
    FIRST_USER_ID,
    SEED_CREATIVES,
)

_AD_FORMATS: Final = ("banner", "video", "native", "interstitial")


@dataclass(frozen=True)
class Country:
    alpha2: str
    alpha3: str
    name: str
    weight: int
    regions: tuple[str, ...]


_COUNTRIES: Final = (
    Country("US", "USA", "United States", 34, ("California", "New York", "Texas", "Florida")),
    Country("CA", "CAN", "Canada", 9, ("Ontario", "Quebec", "British Columbia")),
    Country("GB", "GBR", "United Kingdom", 9, ("England", "Scotland", "Wales")),
    Country("DE", "DEU", "Germany", 9, ("Bavaria", "Berlin", "Hesse")),
    Country("FR", "FRA", "France", 7, ("Ile-de-France", "Occitanie")),
    Country("ES", "ESP", "Spain", 5, ("Madrid", "Catalonia")),
    Country("IT", "ITA", "Italy", 5, ("Lazio", "Lombardy")),
    Country("NL", "NLD", "Netherlands", 4, ("North Holland", "Utrecht")),
    Country("BR", "BRA", "Brazil", 5, ("Sao Paulo", "Rio de Janeiro")),
    Country("MX", "MEX", "Mexico", 4, ("Jalisco", "Nuevo Leon")),
    Country("IN", "IND", "India", 5, ("Maharashtra", "Karnataka")),
    Country("JP", "JPN", "Japan", 4, ("Tokyo", "Osaka")),
)
# (device_type, weight in %, operating systems)
_DEVICES: Final = (
    ("mobile", 55, ("iOS", "Android")),
    ("desktop", 35, ("Windows", "macOS", "Linux")),
    ("tablet", 7, ("iPadOS", "Android")),
    ("ctv", 3, ("tvOS", "Roku OS", "Tizen")),
)
_BROWSERS: Final[Mapping[str, tuple[str, ...]]] = {
    "iOS": ("Safari", "Safari", "Chrome"),
    "Android": ("Chrome", "Chrome", "Samsung Internet"),
    "Windows": ("Chrome", "Edge", "Firefox"),
    "macOS": ("Safari", "Chrome", "Firefox"),
    "Linux": ("Firefox", "Chrome"),
    "iPadOS": ("Safari",),
}
# Users keep one country and device across events: both come from a hash of the user id,
# so no per-user state is stored.
_COUNTRY_SLOTS: Final = tuple(c for c in _COUNTRIES for _ in range(c.weight))
_DEVICE_SLOTS: Final = tuple(d for d in _DEVICES for _ in range(d[1]))
_SITE_WORDS_A: Final = (
    "news",
    "daily",
    "tech",
    "sport",
    "game",
    "food",
    "travel",
    "money",
    "health",
    "style",
    "auto",
    "movie",
    "music",
    "home",
    "weather",
    "science",
    "city",
    "world",
    "local",
    "smart",
)
_SITE_WORDS_B: Final = (
    "hub",
    "site",
    "times",
    "post",
    "zone",
    "wire",
    "today",
    "point",
    "guide",
    "lab",
    "corner",
    "digest",
    "world",
    "feed",
    "mag",
    "central",
    "planet",
    "spot",
    "line",
    "watch",
)
_TLDS: Final = ("com", "org", "net", "io", "co.uk")


@dataclass(frozen=True)
class Creative:
    creative_id: int
    campaign_id: int
    advertiser_id: int
    name: str
    ad_format: str


@dataclass(frozen=True)
class Campaign:
    campaign_id: int
    objective: str  # the conversion type most of its conversions have
    direct_cost: float  # price of a direct (non-auction) impression


class Catalog:
    """Advertisers -> campaigns -> creatives, plus websites; all small, built once per run."""

    def __init__(self, cfg: DatagenConfig, rng: random.Random) -> None:
        assert cfg.campaigns is not None and cfg.advertisers is not None
        assert cfg.websites is not None
        self.campaigns: dict[int, Campaign] = {}
        self.creatives: list[Creative] = []
        cumulative: list[float] = []
        total = 0.0
        next_creative = FIRST_CREATIVE_ID
        for c in range(cfg.campaigns):
            campaign_id = FIRST_CAMPAIGN_ID + c
            advertiser_id = FIRST_ADVERTISER_ID + rng.randrange(cfg.advertisers)
            # Budgets are lognormal: a few campaigns buy most of the traffic.
            budget = rng.lognormvariate(0.0, 1.0)
            self.campaigns[campaign_id] = Campaign(
                campaign_id,
                CONVERSION_TYPES[rng.randrange(len(CONVERSION_TYPES))],
                round(rng.uniform(1.0, 4.0) / 1000, 6),
            )
            for k in range(cfg.creatives_per_campaign):
                ad_format = _AD_FORMATS[rng.randrange(len(_AD_FORMATS))]
                self.creatives.append(
                    Creative(
                        next_creative,
                        campaign_id,
                        advertiser_id,
                        f"Campaign {campaign_id} {ad_format} {k + 1}",
                        ad_format,
                    )
                )
                next_creative += 1
                total += budget * rng.uniform(0.5, 1.5)
                cumulative.append(total)
        self.creative_cumulative = cumulative
        self.creative_total = total
        self.domains = _domain_names(cfg.websites)
        rng.shuffle(self.domains)  # popularity rank must not follow the naming pattern

    def reference_rows(self) -> list[tuple[Any, ...]]:
        rows = [tuple(seed[c] for c in CREATIVE_COLUMNS) for seed in SEED_CREATIVES]
        rows.extend(
            (c.creative_id, c.campaign_id, c.advertiser_id, c.name, c.ad_format)
            for c in self.creatives
        )
        return rows


def _domain_names(n: int) -> list[str]:
    names = ["example.com", "example.org", "example.net", "news-site.org"][:n]
    a, b, t = len(_SITE_WORDS_A), len(_SITE_WORDS_B), len(_TLDS)
    i = 0
    while len(names) < n:
        rep = i // (a * b * t)
        suffix = str(rep + 1) if rep else ""
        first, second = _SITE_WORDS_A[i % a], _SITE_WORDS_B[(i // a) % b]
        names.append(f"{first}-{second}{suffix}.{_TLDS[(i // (a * b)) % t]}")
        i += 1
    return names


def profile(user_id: int) -> tuple[Country, str, str, str | None, str]:
    """(country, device_type, os, browser, region) of a user, stable across events."""
    h = (user_id * 2_654_435_761) & 0xFFFFFFFF  # Knuth's multiplicative hash
    country = _COUNTRY_SLOTS[h % 100]
    device_type, _, systems = _DEVICE_SLOTS[(h >> 7) % 100]
    os_name = systems[(h >> 14) % len(systems)]
    browsers = _BROWSERS.get(os_name)
    browser = browsers[(h >> 18) % len(browsers)] if browsers else None
    return country, device_type, os_name, browser, country.regions[(h >> 22) % len(country.regions)]


def _coprime_stride(n: int) -> int:
    # Maps popularity ranks to scattered user ids (a bijection on [0, n)).
    stride = 1_000_003
    while math.gcd(stride, n) != 1:
        stride += 2
    return stride


class Draws:
    """Random picks from the catalog and the user population, on the run's one RNG."""

    def __init__(self, cfg: DatagenConfig, catalog: Catalog, rng: random.Random) -> None:
        assert cfg.users is not None
        self._r = rng.random
        self._catalog = catalog
        self._n_users = cfg.users
        self._user_head = max(5.0, cfg.users / 1000)
        self._user_log = math.log1p(cfg.users / self._user_head)
        self._user_stride = _coprime_stride(cfg.users)
        n_sites = len(catalog.domains)
        self._site_head = 2.0
        self._site_log = math.log1p(n_sites / self._site_head)

    def user(self) -> int:
        # Log-uniform rank with a flattened head: heavy-tailed like Zipf, O(1) and stateless.
        rank = int(self._user_head * (math.exp(self._r() * self._user_log) - 1.0))
        rank = min(rank, self._n_users - 1)
        return FIRST_USER_ID + (rank * self._user_stride) % self._n_users

    def creative(self) -> Creative:
        cat = self._catalog
        i = bisect_right(cat.creative_cumulative, self._r() * cat.creative_total)
        return cat.creatives[min(i, len(cat.creatives) - 1)]

    def domain(self) -> str:
        domains = self._catalog.domains
        rank = int(self._site_head * (math.exp(self._r() * self._site_log) - 1.0))
        return domains[min(rank, len(domains) - 1)]

    def raw_website(self, domain: str) -> str:
        """The domain as some producer wrote it; silver must canonicalize all of these."""
        u = self._r()
        if u < 0.55:
            return domain
        if u < 0.65:
            return f"www.{domain}"
        if u < 0.75:
            return f"https://www.{domain.capitalize()}:443/path?q={int(self._r() * 9) + 1}"
        if u < 0.83:
            return f"http://{domain}/"
        if u < 0.90:
            return f"WWW.{domain}/"
        if u < 0.96:
            return f"https://{domain}/articles/{int(self._r() * 900) + 100}"
        return domain.upper()

    def country_text(self, country: Country, alpha2_share: float, alpha3_share: float) -> str:
        u = self._r()
        if u < alpha2_share:
            return country.alpha2
        if u < alpha2_share + alpha3_share:
            return country.alpha3
        return country.name
