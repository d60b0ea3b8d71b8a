"""Silver validation: compile the configured rules against a DataFrame and apply them.

The rules and their parser live in `adlake.settings.silver`; here each rule's SQL expression
is analysed against the standardized rows and every row gets the names of the rules it fails
(`_quarantine_rules`, `_warn_rules`, `_fail_rules`). Pure transforms; see docs/silver.md.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from pyspark.errors import PySparkException
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import ArrayType, BooleanType, DataType, StringType

from adlake.settings.silver import RULE_COLUMNS, RULE_SOURCES, Rule


class RuleError(ValueError):
    """A rule's expression does not compile against the rows it checks, or is not boolean."""


def _compile_rules(df: DataFrame, rules: Sequence[Rule], source: str) -> list[Column]:
    """Each rule's expression, analysed against `df` (no action) so errors name the rule.

    All of them in one analysis (each is a Py4J round trip through the analyser, paid by
    every batch); only when that fails is each analysed alone to name the rule at fault.
    """
    checks = [F.expr(rule.expr) for rule in rules]
    try:
        types: list[DataType] = [f.dataType for f in df.select(*checks).schema] if checks else []
    except PySparkException:
        types = [
            _analysed_type(df, rule, check, source)
            for rule, check in zip(rules, checks, strict=True)
        ]
    for rule, data_type in zip(rules, types, strict=True):
        if not isinstance(data_type, BooleanType):
            raise RuleError(
                f"rule '{rule.name}' ({source}): expr is {data_type.simpleString()}, not boolean"
            )
    return checks


def _analysed_type(df: DataFrame, rule: Rule, check: Column, source: str) -> DataType:
    try:
        return df.select(check).schema[0].dataType
    except PySparkException as exc:
        raise RuleError(f"rule '{rule.name}' ({source}): {exc}") from exc


def apply_rules(rules: Sequence[Rule], source: str) -> Callable[[DataFrame], DataFrame]:
    """Add `_quarantine_rules`, `_warn_rules`, `_fail_rules`: names of the failed rules.

    Only rules listing `source` apply; names appear in rule order, every failed rule is
    listed, and a row failing none gets empty arrays. Rows are neither dropped nor added.
    """
    if source not in RULE_SOURCES:
        raise ValueError(f"unknown rule source {source!r}; use {', '.join(RULE_SOURCES)}")
    active = [rule for rule in rules if source in rule.sources]

    def transform(df: DataFrame) -> DataFrame:
        checks = _compile_rules(df, active, source)
        columns: dict[str, Column] = {}
        for action, out_col in RULE_COLUMNS.items():
            # "" marks a passed rule (names are snake_case, never empty): array_remove runs
            # as generated code, where filter() with a lambda was interpreted row by row.
            failed = [
                F.when(check.eqNullSafe(F.lit(False)), F.lit(rule.name)).otherwise(F.lit(""))
                for rule, check in zip(active, checks, strict=True)
                if rule.action == action
            ]
            columns[out_col] = (
                F.array_remove(F.array(*failed), "")
                if failed
                else F.array().cast(ArrayType(StringType()))
            )
        return df.withColumns(columns)

    return transform
