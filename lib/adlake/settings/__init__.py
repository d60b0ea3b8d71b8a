"""Section parsers of the configuration: plain Python, no PySpark, imported by `config`."""
