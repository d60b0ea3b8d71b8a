"""Leases: at most one writer per job and source at a time, across processes and hosts.

See docs/operations.md for how it works.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # keeps `adlake.cli` (which names LeaseHeldError) free of the Spark import
    from pyspark.sql import SparkSession

    from adlake.config import AppConfig

log = logging.getLogger(__name__)

_GENERATION_FILE = "{:020d}.json"


class LeaseHeldError(RuntimeError):
    """Another run holds a live lease on what this run would write; the message names it."""


class LeaseLostError(RuntimeError):
    """The lease expired while held and another run took it over."""


@dataclass(frozen=True)
class LeaseState:
    """One generation file: who holds (or held) the lease and until when (Unix seconds)."""

    generation: int
    token: str
    host: str
    pid: int
    acquired_at: float
    expires_at: float

    def describe(self) -> str:
        def utc(ts: float) -> str:
            return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")

        return (
            f"host {self.host} pid {self.pid} since {utc(self.acquired_at)},"
            f" expires {utc(self.expires_at)}"
        )


class Lease:
    """One named lease under `<checkpoints>/_leases/`; `now` is injectable for tests."""

    def __init__(
        self,
        spark: SparkSession,
        cfg: AppConfig,
        name: str,
        ttl_seconds: int | None = None,
        now: Callable[[], float] | None = None,
    ) -> None:
        self.spark = spark
        self.name = name
        self.ttl = ttl_seconds if ttl_seconds is not None else cfg.lease_ttl_seconds
        self.directory = cfg.checkpoint_path(f"_leases/{name}")
        self.token = uuid.uuid4().hex
        self.now = now or time.time
        self.generation: int | None = None  # held generation, None when not held
        from adlake import deltalog  # here: keeps the module free of the Spark import

        self._path_class = deltalog.path_class(spark)
        self._read_text = functools.partial(deltalog.read_text, spark)
        self._dir = self._path_class(self.directory)
        self._fs = self._dir.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())

    # -- reading ---------------------------------------------------------------------------
    def _generations(self) -> list[int]:
        if not self._fs.exists(self._dir):
            return []
        names = [str(s.getPath().getName()) for s in self._fs.listStatus(self._dir)]
        return sorted(int(n[:-5]) for n in names if n.endswith(".json") and n[:-5].isdigit())

    def _path(self, generation: int) -> Any:
        return self._path_class(self._dir, _GENERATION_FILE.format(generation))

    def _read(self, generation: int) -> LeaseState | None:
        """The state in one generation file; None if it vanished (released meanwhile)."""
        path = self._path(generation)
        try:
            status = self._fs.getFileStatus(path)
            stream = self._fs.open(path)
        except Exception:  # deleted between listing and reading
            return None
        try:
            text = self._read_text(stream)
        finally:
            stream.close()
        try:
            data = json.loads(text)
            return LeaseState(
                generation,
                str(data["token"]),
                str(data["host"]),
                int(data["pid"]),
                float(data["acquired_at"]),
                float(data["expires_at"]),
            )
        except (ValueError, KeyError, TypeError):
            # Being written right now (or damaged): live until its file is ttl old.
            modified = int(status.getModificationTime()) / 1000
            return LeaseState(generation, "", "unknown", 0, modified, modified + self.ttl)

    def current(self) -> LeaseState | None:
        """The state of the highest generation, None when nobody holds or held the lease."""
        for generation in reversed(self._generations()):
            state = self._read(generation)
            if state is not None:
                return state
        return None

    # -- writing ---------------------------------------------------------------------------
    def _create_exclusive(self, generation: int, acquired_at: float) -> bool:
        """Create a generation file unless it exists; True when this call created it."""
        now = self.now()
        body = json.dumps(
            {
                "token": self.token,
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "acquired_at": acquired_at,
                "expires_at": now + self.ttl,
            }
        ).encode("utf-8")
        path = self._path(generation)
        self._fs.mkdirs(self._dir)
        if str(self._fs.getScheme()) == "file":
            # Hadoop's local create(overwrite=false) checks, then opens: not atomic. O_EXCL is.
            local = str(path.toUri().getPath())
            try:
                fd = os.open(local, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                return False
            try:
                os.write(fd, body)
            finally:
                os.close(fd)
            return True
        try:
            out = self._fs.create(path, False)
        except Exception as exc:
            java = getattr(exc, "java_exception", None)
            if java is not None and "FileAlreadyExists" in str(java.getClass().getName()):
                return False
            raise
        try:
            out.write(bytearray(body))
        finally:
            out.close()
        return True

    def _delete_below(self, generation: int) -> None:
        """Best-effort cleanup of older generations (a crashed holder's, our previous one)."""
        for older in self._generations():
            if older < generation:
                self._fs.delete(self._path(older), False)

    def _claim(self, generation: int, acquired_at: float) -> bool:
        """Create `generation` and check nobody got further meanwhile; True when it is ours."""
        if not self._create_exclusive(generation, acquired_at):
            return False
        if max(self._generations(), default=generation) > generation:
            # A slower run recreated a generation already cleaned up: the higher one wins.
            self._fs.delete(self._path(generation), False)
            return False
        self.generation = generation
        self._delete_below(generation)
        return True

    def acquire(self) -> None:
        """Take the lease, or take over an expired one; raises LeaseHeldError when held."""
        for _ in range(3):  # a lost race re-reads the state: then it is held by the winner
            state = self.current()
            if state is not None and state.expires_at > self.now():
                raise LeaseHeldError(
                    f"lease {self.name} is held by another run ({state.describe()}); "
                    f"it ends when that run does, or when it stops renewing and expires "
                    f"(remove {self.directory} only if that run is certainly gone)"
                )
            if self._claim((state.generation if state else 0) + 1, self.now()):
                if state is not None:
                    log.warning(
                        "lease %s: took over an expired lease (%s)", self.name, state.describe()
                    )
                log.info("lease %s acquired (generation %d)", self.name, self.generation)
                return
        state = self.current()
        raise LeaseHeldError(
            f"lease {self.name} is contended ({state.describe() if state else 'no holder'})"
        )

    def renew(self) -> None:
        """Extend the held lease by a ttl; raises LeaseLostError when another run took it."""
        held = self.generation
        if held is None:
            raise LeaseLostError(f"lease {self.name} is not held")
        state = self.current()
        if state is None or state.token != self.token:
            self.generation = None
            holder = state.describe() if state else "nobody"
            raise LeaseLostError(f"lease {self.name} was taken over: now held by {holder}")
        if not self._claim(state.generation + 1, state.acquired_at):
            self.generation = None
            raise LeaseLostError(f"lease {self.name} was taken over while renewing")

    def release(self) -> None:
        """Give the lease up (deletes our generation file; a no-op when not held)."""
        if self.generation is not None:
            self._fs.delete(self._path(self.generation), False)
            log.info("lease %s released", self.name)
            self.generation = None


@contextmanager
def holding(
    spark: SparkSession, cfg: AppConfig, job: str, scopes: Iterable[str] = ()
) -> Iterator[list[Lease]]:
    """Hold the leases `<job>-<scope>` (no scopes: `<job>`) for the block, renewed in the
    background and released after.

    Raises LeaseHeldError before the block runs when one is held by a live run (leases taken
    so far are released), and LeaseLostError after it when one was taken over meanwhile.
    """
    leases: list[Lease] = []
    try:
        for name in sorted({f"{job}-{scope}" for scope in scopes}) or [job]:
            lease = Lease(spark, cfg, name)
            lease.acquire()
            leases.append(lease)
    except BaseException:
        for lease in leases:
            lease.release()
        raise
    stop = threading.Event()
    lost: list[str] = []

    def renew_all() -> None:
        while not stop.wait(max(1.0, leases[0].ttl / 3)):
            for lease in leases:
                if lease.generation is None:
                    continue
                try:
                    lease.renew()
                except LeaseLostError as exc:
                    log.error("%s", exc)
                    lost.append(str(exc))
                except Exception:  # a flaky file system must not kill the heartbeat
                    log.warning("lease %s: renewal failed, retrying", lease.name, exc_info=True)

    heartbeat = threading.Thread(target=renew_all, name=f"lease-{job}", daemon=True)
    heartbeat.start()
    try:
        yield leases
    finally:
        stop.set()
        heartbeat.join()
        for lease in leases:
            lease.release()
    if lost:
        raise LeaseLostError("; ".join(lost))
