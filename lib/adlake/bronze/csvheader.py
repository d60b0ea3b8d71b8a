"""CSV headers: how Spark's CSV reader is told to read the files that share one header.

A file's header is its first non-blank line (`readers` reads it in the driver); files are
grouped by its tokens, and each group is one read with the schema and options here, its
columns then renamed by position for `parse.parse_csv_rows`.
"""

from __future__ import annotations

import csv
from collections import Counter
from collections.abc import Sequence

from pyspark.sql.types import StringType, StructField, StructType

CORRUPT = "_csv_corrupt"  # the reader's columnNameOfCorruptRecord
# Options for Spark's CSV reader and `to_csv`: RFC 4180 quoting ("" inside a quoted field),
# blanks around values kept (the writer trims them by default).
OPTIONS = {
    "escape": '"',
    "ignoreLeadingWhiteSpace": "false",
    "ignoreTrailingWhiteSpace": "false",
}
_BOM = "\ufeff"
# Java's String.trim: what Spark's CSV reader strips to find blank lines.
_JAVA_BLANK = "".join(chr(c) for c in range(33))


def tokens(line: str) -> list[str]:
    """A header line split as Spark's CSV reader splits it (RFC 4180 quoting, blanks kept),
    after a leading byte-order mark."""
    text = line[1:] if line.startswith(_BOM) else line
    return next(csv.reader([text]), [""])


def names(header_tokens: Sequence[str]) -> tuple[str, ...]:
    """Column names of a header's tokens: trimmed, unquoted and lowercased, so files may
    quote or capitalize their header differently."""
    found = []
    for token in header_tokens:
        name = token.strip()
        if len(name) >= 2 and name[0] == name[-1] == '"':
            name = name[1:-1].replace('""', '"').strip()
        found.append(name.lower())
    return tuple(found)


def is_blank(line: str) -> bool:
    """A line Spark's CSV reader skips (before the header too): nothing but blanks."""
    return not line.lstrip(_BOM).strip(_JAVA_BLANK)


def duplicates(header: Sequence[str]) -> list[str]:
    """Names a header gives to more than one column (its file cannot be read by name)."""
    return sorted(name for name, count in Counter(header).items() if count > 1)


def read_schema(header_tokens: Sequence[str]) -> StructType:
    """The schema the reader reads files with this header into: one string per header
    token, named by it (so the reader finds the header conforms and logs nothing), and the
    text of a row whose field count differs from the header's."""
    return StructType(
        [StructField(t, StringType()) for t in header_tokens] + [StructField(CORRUPT, StringType())]
    )


def positional(width: int) -> list[str]:
    """The read's columns renamed for `parse.parse_csv_rows`: `_c0`... then the corrupt-record
    column (header names may be anything, even empty)."""
    return [f"_c{i}" for i in range(width)] + [CORRUPT]
