"""AdLake: a PySpark + Delta Lake lakehouse for programmatic-advertising data."""
