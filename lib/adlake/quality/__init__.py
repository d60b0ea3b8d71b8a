"""Data quality: checks over every layer, graded against the `quality:` thresholds.

Results go to ops/dq_results; see docs/quality.md.
"""
