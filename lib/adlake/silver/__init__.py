"""Silver layer: bronze tables -> typed, validated, deduplicated silver tables.

Pure transforms in `standardize`, `rules` and `dedup`; `run` drives batch and stream runs
(MERGE writes, quarantine, ops/batch_audit). Specification: docs/silver.md.
"""
