"""The per-item work that needs no database: parse -> normalize -> fingerprint -> match.

It is most of a first poll's CPU time, and each feed's share depends on nothing but its own
bytes and the watchlists, so a large poll spreads it over a pool of processes (one per core):
`Preparer` hands out the bodies and gives back, in order, what pipeline.ingest stores. A small
poll (the scheduler's usual few sources) runs it inline: starting processes costs more than it
would save.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from datetime import datetime

from bot.errors import ParseError
from bot.failpoints import failpoint
from bot.ingest.normalize import normalize, url_key
from bot.ingest.parse import parse
from bot.match.query import Matcher
from bot.model import Entry, Item, Source, Span
from bot.stories.fingerprint import Fingerprint, fingerprint

log = logging.getLogger("newsalert.pipeline")

# Below this many bytes of bodies a poll prepares them inline. Starting two worker processes
# (spawned: a fork next to the scheduler's threads is unsafe) and importing bot into them
# takes about 0.4 s; preparing an item inline about 0.3 ms. Measured on 100 sources of the
# bench corpus: 20 items each (3.4 MB) are faster inline, 50 items each (8.7 MB) in the pool.
POOL_MIN_BYTES = 6_000_000
MAX_WORKERS = 4
CHUNKS_AHEAD = 3  # per worker: submitted but not yet stored


@dataclass(frozen=True)
class Prepared:
    """One entry, ready to be stored: its item, its fingerprint, the watchlists it matched, and
    the key its link is deduplicated on (normalize.url_key; "" without a link)."""

    item: Item
    fingerprint: Fingerprint
    matches: dict[str, list[Span]]
    url_key: str


def prepare_entries(
    entries: Sequence[Entry], source: Source, fetched: datetime, matcher: Matcher
) -> list[Prepared]:
    out = []
    for entry in entries:
        try:
            item = normalize(entry, source, fetched)
            fp = fingerprint(item.title, item.text)
            matches = matcher.match(item.title, item.text, source=item.source)
        except Exception as e:  # one odd entry must not cost the rest of the feed, or the poll
            log.warning("entry skipped source=%r guid=%r reason=%s", source.name, entry.guid, e)
            continue
        out.append(Prepared(item, fp, matches, url_key(item.url) if item.url else ""))
    return out


def prepare_body(
    body: bytes, source: Source, headers: Mapping[str, str], fetched: datetime, matcher: Matcher
) -> list[Prepared]:
    """Raises ParseError when the body is not a feed."""
    return prepare_entries(parse(body, source, headers), source, fetched, matcher)


@dataclass(frozen=True)
class Job:
    source: Source
    body: bytes
    headers: dict[str, str]
    fetched: datetime


class Preparer:
    """Prepares many bodies, in a process pool when there are enough of them to pay for it.

    Use as a context manager; ``run`` yields one result per job, in order: the prepared items,
    or the ParseError of a body that is not a feed. If the pool breaks (a worker killed), the
    rest is prepared inline: slower, but nothing is lost.
    """

    def __init__(
        self, watchlists: Mapping[str, str], *, workers: int = 0, pool_min_bytes: int = POOL_MIN_BYTES
    ):
        self._watchlists = dict(watchlists)
        self._matcher: Matcher | None = None  # compiled on first use inline
        self._workers = workers or min(os.cpu_count() or 1, MAX_WORKERS)
        self._pool_min_bytes = pool_min_bytes
        self._pool: ProcessPoolExecutor | None = None

    def __enter__(self) -> Preparer:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None

    @property
    def matcher(self) -> Matcher:
        if self._matcher is None:
            self._matcher = Matcher(self._watchlists)
        return self._matcher

    def run(self, jobs: Sequence[Job], *, batches_left: int = 1) -> Iterator[list[Prepared] | ParseError]:
        """One result per job, in order. The pool, once started, serves every later call.

        ``batches_left``: how many calls like this one the caller expects, this one included;
        the pool is started when all of them together look big enough to pay for it.
        """
        expected = sum(len(job.body) for job in jobs) * batches_left
        small = len(jobs) < 2 or expected < self._pool_min_bytes
        if self._pool is None and (small or self._workers < 2):
            for job in jobs:
                yield self._inline(job)
            return
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                self._workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_start_worker,
                initargs=(self._watchlists, logging.getLogger().getEffectiveLevel()),
            )
        # Chunks: fewer round trips between processes, but small enough that the first results
        # come back soon, so storing them overlaps with preparing the rest. Only a few chunks
        # are in flight at a time: prepared items do not pile up in memory when storing them
        # is slower than preparing them.
        size = max(1, min(8, len(jobs) // (self._workers * 8)))
        chunks = [jobs[i : i + size] for i in range(0, len(jobs), size)]
        in_flight: deque[Future[list[tuple[list[Prepared] | ParseError, list[_Record]]]]] = deque()
        submitted = yielded = 0
        try:
            while yielded < len(jobs):
                while submitted < len(chunks) and len(in_flight) < self._workers * CHUNKS_AHEAD:
                    in_flight.append(self._pool.submit(_prepare_chunk, chunks[submitted]))
                    submitted += 1
                for result, records in in_flight.popleft().result():
                    for name, level, message in records:
                        logging.getLogger(name).log(level, "%s", message)
                    yielded += 1
                    yield result
        except BrokenProcessPool as e:
            log.warning(
                "parse pool broke after %d of %d bodies (%s); preparing the rest of the poll inline",
                yielded,
                len(jobs),
                e,
            )
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool, self._workers = None, 1  # and no new pool for the batches still to come
            for job in jobs[yielded:]:
                yield self._inline(job)

    def _inline(self, job: Job) -> list[Prepared] | ParseError:
        return _prepare_job(job, self.matcher)


# --- in the worker processes ---------------------------------------------------------------

_Record = tuple[str, int, str]  # what a worker logged: (logger name, level, message)
_worker_matcher: Matcher | None = None
_worker_records: list[_Record] = []


class _Collect(logging.Handler):
    """Keeps what a job logs, to be logged again by the parent (where the handlers are)."""

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if record.exc_info:
            message += "\n" + logging.Formatter().formatException(record.exc_info)
        _worker_records.append((record.name, record.levelno, message))


def _start_worker(watchlists: Mapping[str, str], level: int) -> None:
    global _worker_matcher
    _worker_matcher = Matcher(watchlists)
    root = logging.getLogger()
    root.handlers[:] = [_Collect()]
    root.setLevel(level)


def _prepare_chunk(jobs: Sequence[Job]) -> list[tuple[list[Prepared] | ParseError, list[_Record]]]:
    return [_prepare_in_worker(job) for job in jobs]


def _prepare_in_worker(job: Job) -> tuple[list[Prepared] | ParseError, list[_Record]]:
    assert _worker_matcher is not None
    failpoint("prepare-worker")
    _worker_records.clear()
    result = _prepare_job(job, _worker_matcher)
    return result, list(_worker_records)


def _prepare_job(job: Job, matcher: Matcher) -> list[Prepared] | ParseError:
    """The prepared items, or why the body could not be read: one source's failure, never the poll's."""
    try:
        return prepare_body(job.body, job.source, job.headers, job.fetched, matcher)
    except ParseError as e:
        return e
    except Exception as e:  # a bug met by one feed: logged whole, and that source alone fails
        log.exception("unexpected error reading source=%r url=%s", job.source.name, job.source.url)
        return ParseError(job.source.url, f"unexpected error reading the feed: {type(e).__name__}: {e}")
