"""The gold layer: attribution under six models, Markov weights and daily aggregates.

`touches`, `models`, `markov` and `aggregates` are pure DataFrame transforms; `run`
(`build_gold`) and `incremental` write the gold tables declared in `adlake.tables`.
Specification: docs/gold.md.
"""
