"""Column expressions built once per JVM gateway and kept: the parsers' projections."""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

from pyspark import SparkContext

_T = TypeVar("_T")
_BUILT: dict[Hashable, tuple[object, Any]] = {}
_BUILT_LOCK = threading.Lock()
_BUILT_MAX = 256


def built(key: Hashable, build: Callable[[], _T]) -> _T:
    """`build()` once per key and JVM gateway: a parse's column expressions.

    Every Spark function call is a Py4J round trip, and a parse's expressions (hundreds of
    calls) cost 0.5-1 s of driver time per read, paid by every run and streaming
    micro-batch. They are unresolved expressions bound to no DataFrame, so a later read with
    the same key (the contract and the CSV header or the Avro writer schema) reuses them.
    """
    gateway = SparkContext._gateway
    with _BUILT_LOCK:
        entry = _BUILT.get(key)
    if entry is not None and entry[0] is gateway:
        value: _T = entry[1]
        return value
    value = build()
    with _BUILT_LOCK:
        if len(_BUILT) >= _BUILT_MAX:  # many drifted Avro writer schemas: start over
            _BUILT.clear()
        _BUILT[key] = (gateway, value)
    return value
