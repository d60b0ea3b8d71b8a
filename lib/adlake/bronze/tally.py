"""A bronze run's record counts, taken by the pass that writes bronze (`DataFrame.observe`),
and the hash buckets that let the quarantine pass re-parse only the rejected lines."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from adlake import schemas
from adlake.bronze.parse import RAW_RECORD, REJECT_REASON, REJECT_REASONS

# The quarantine append reads the files with rejects a second time. For line-based sources
# the first pass also collects the hash buckets of its rejected lines (`reject_buckets`: at
# most REJECT_BUCKETS integers, whatever the input size), and the second pass parses only the
# lines in those buckets, a superset of the rejected ones that parsing narrows down exactly.
REJECT_BUCKETS = 1 << 18


def _line_bucket(text: Column) -> Column:
    return F.pmod(F.xxhash64(text), F.lit(REJECT_BUCKETS)).cast("int")


BUCKET = "_bucket"


def lines_in_buckets(buckets: DataFrame) -> Callable[[DataFrame], DataFrame]:
    """Keep the text lines (`value`) whose hash bucket is one of `buckets` (column `_bucket`).

    A broadcast semi join: a line costs one hash and one lookup instead of a JSON parse.
    """

    def transform(lines: DataFrame) -> DataFrame:
        return lines.join(
            F.broadcast(buckets), _line_bucket(F.col("value")) == buckets[BUCKET], "left_semi"
        )

    return transform


def tally_metrics(files: Sequence[str], *, line_buckets: bool = False) -> list[Column]:
    """Aggregates that count a run's parsed records per file (good, rejected) and per reason.

    Written for `DataFrame.observe`, so the counts come from the pass that writes bronze.
    `unmatched` counts records whose `_source_file` is not one of `files`: it must be 0.
    With `line_buckets`, `reject_buckets` is the set of the rejected lines' hash buckets.
    """
    index = F.array_position(F.array(*[F.lit(f) for f in files]), F.col(schemas.SOURCE_FILE))
    good = F.col(REJECT_REASON).isNull()
    metrics = [F.count_if(index == 0).alias("unmatched")]
    for i in range(len(files)):
        metrics.append(F.count_if((index == i + 1) & good).alias(f"good_{i}"))
        metrics.append(F.count_if((index == i + 1) & ~good).alias(f"bad_{i}"))
    metrics.extend(
        F.count_if(F.col(REJECT_REASON) == r).alias(f"reason_{r}") for r in REJECT_REASONS
    )
    if line_buckets:
        rejected_line = ~good & F.col(RAW_RECORD).isNotNull()
        metrics.append(
            F.collect_set(F.when(rejected_line, _line_bucket(F.col(RAW_RECORD)))).alias(
                "reject_buckets"
            )
        )
    return metrics


@dataclass(frozen=True)
class Tally:
    """A run's record counts: per file (good, rejected) and rejects per reason."""

    counts: dict[str, tuple[int, int]]
    reasons: tuple[tuple[str, int], ...]
    reject_buckets: frozenset[int] | None = None

    @property
    def good(self) -> int:
        return sum(c[0] for c in self.counts.values())

    @property
    def bad(self) -> int:
        return sum(c[1] for c in self.counts.values())

    def with_rejects(self, files: Sequence[str]) -> list[str]:
        """The files among `files` that had rejected records, in their order."""
        return [f for f in files if self.counts[f][1]]

    @classmethod
    def from_metrics(cls, files: Sequence[str], values: Mapping[str, Any]) -> Tally:
        """Read the values of `tally_metrics(files)`; fails on records of an unknown file."""
        if values["unmatched"]:
            raise ValueError(
                f"{values['unmatched']} records carry a source file outside the run's files"
            )
        counts = {
            f: (int(values[f"good_{i}"]), int(values[f"bad_{i}"])) for i, f in enumerate(files)
        }
        reasons = tuple(
            (r, int(values[f"reason_{r}"])) for r in REJECT_REASONS if values[f"reason_{r}"]
        )
        buckets = values.get("reject_buckets")
        return cls(counts, reasons, None if buckets is None else frozenset(buckets))
