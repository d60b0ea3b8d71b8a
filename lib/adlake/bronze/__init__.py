"""The bronze layer: landing files -> bronze tables and quarantine, exactly once.

`parse` holds the pure parsers, `filelog` the write-ahead file log's pure bookkeeping and
`ingest` the runner (batch and stream). See docs/bronze.md.
"""
