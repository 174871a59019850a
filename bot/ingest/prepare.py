"""The per-item work that needs no database: parse -> normalize -> fingerprint -> match.

It is most of a poll's CPU time, it is where untrusted bytes are read, and each feed's share
depends on nothing but its own bytes and the watchlists. So it runs in worker processes
(bot.ingest.workers) under a time budget per source (``parse_timeout``, 10 s of CPU by default,
and at most three times that in wall time): a body that takes longer has its process killed
and replaced, and that source alone fails with "parse took longer than 10 s", while the rest
of the poll is stored and alerted as usual.

``Preparer`` hands out the bodies and gives back, in order, what bot.ingest.poll stores. One
process serves a small poll and stays up for the next, so only the first poll of a process
that has bodies to read waits for it to start (~0.3 s; a poll of 304s starts nothing); a large
poll is spread over one process per core.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from bot.errors import ParseAborted, ParseError
from bot.failpoints import failpoint
from bot.ingest.normalize import normalize, url_key
from bot.ingest.parse import parse
from bot.ingest.workers import INLINE, Pool, Stopped
from bot.match.query import Matcher
from bot.model import Entry, Item, Source, Span
from bot.stories.fingerprint import Fingerprint, fingerprint
from bot.urls import redact

log = logging.getLogger("newsalert.pipeline")

# From this many bytes of bodies on, a poll is prepared by one process per core (up to
# MAX_WORKERS), below by one. Starting a process (spawned: a fork next to the scheduler's
# threads is unsafe) and importing bot into it takes about 0.3 s, preparing an item about
# 0.3 ms. Measured on 100 sources of the bench corpus: 20 items each (3.4 MB) gain nothing
# from more processes, 50 items each (8.7 MB) do.
POOL_MIN_BYTES = 6_000_000
MAX_WORKERS = 4
PARSE_TIMEOUT = 10.0  # seconds per source; Settings.parse_timeout


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


@dataclass(frozen=True)
class _Task:
    """What a worker process is sent: the job, and what it needs to do it as this process would."""

    job: Job
    watchlists: dict[str, str]
    log_level: int


class Preparer:
    """Prepares many bodies in worker processes, each source within ``timeout`` seconds.

    Use as a context manager (the processes are given back on exit); ``run`` yields one result
    per job, in order: the prepared items, or the ParseError of a body that is not a feed, or a
    ParseAborted for one that ran out of time or killed its process. If no process can be
    started at all, bodies are prepared inline, without a time budget, and a warning says so.
    """

    def __init__(
        self,
        watchlists: Mapping[str, str],
        *,
        workers: int = 0,
        pool_min_bytes: int = POOL_MIN_BYTES,
        timeout: float = PARSE_TIMEOUT,
    ):
        self._watchlists = dict(watchlists)
        self._matcher: Matcher | None = None  # compiled on first use inline
        self._workers = workers or min(os.cpu_count() or 1, MAX_WORKERS)
        self._pool_min_bytes = pool_min_bytes
        self._timeout = timeout
        self._pool: Pool | None = None

    def __enter__(self) -> Preparer:
        self._pool = _take_pool()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pool is not None:
            _give_back(self._pool)
            self._pool = None

    @property
    def matcher(self) -> Matcher:
        if self._matcher is None:
            self._matcher = Matcher(self._watchlists)
        return self._matcher

    def run(self, jobs: Sequence[Job], *, batches_left: int = 1) -> Iterator[list[Prepared] | ParseError]:
        """One result per job, in order.

        ``batches_left``: how many calls like this one the caller expects, this one included;
        more processes are started when all of them together look big enough to pay for it.
        """
        assert self._pool is not None, "use Preparer as a context manager"
        expected = sum(len(job.body) for job in jobs) * batches_left
        count = self._workers if len(jobs) > 1 and expected >= self._pool_min_bytes else 1
        level = logging.getLogger().getEffectiveLevel()
        tasks = [_Task(job, self._watchlists, level) for job in jobs]
        for job, result in zip(
            jobs, self._pool.run(tasks, workers=count, timeout=self._timeout), strict=True
        ):
            if result is INLINE:  # no process could take it (bot.ingest.workers said why)
                yield _prepare_job(job, self.matcher)
            elif isinstance(result, Stopped):
                yield _aborted(job, result, self._timeout)
            else:
                prepared, records = result
                for name, level_no, message in records:
                    logging.getLogger(name).log(level_no, "%s", message)
                yield prepared


def _aborted(job: Job, stopped: Stopped, timeout: float) -> ParseAborted:
    if stopped.timed_out:
        reason = f"parse took longer than {timeout:g} s; stopped"
    else:
        reason = f"the process reading the feed died ({stopped.detail})"
    log.warning(
        "parse stopped, worker replaced source=%r url=%s reason=%s detail=%s bytes=%d",
        job.source.name,
        redact(job.source.url),
        reason,
        stopped.detail,
        len(job.body),
    )
    return ParseAborted(job.source.url, reason, timed_out=stopped.timed_out)


# --- the processes, kept between polls -------------------------------------------------------

_idle: Pool | None = None  # one process, warm, waiting for the next poll
_idle_lock = threading.Lock()


def _take_pool() -> Pool:
    global _idle
    with _idle_lock:
        pool, _idle = _idle, None
    return pool if pool is not None else Pool("bot.ingest.prepare:_prepare_in_worker")


def _give_back(pool: Pool) -> None:
    global _idle
    pool.shrink(1)  # a large poll's extra processes are not kept: each holds ~35 MB or more
    with _idle_lock:
        if _idle is None and pool.usable:
            _idle, pool = pool, None  # type: ignore[assignment]
    if pool is not None:  # another poll ran at the same time and kept its own
        pool.close()


def stop_workers() -> None:
    """Stop the process kept for the next poll (at exit they stop by themselves: daemons)."""
    global _idle
    with _idle_lock:
        pool, _idle = _idle, None
    if pool is not None:
        pool.close()


# --- in the worker processes ---------------------------------------------------------------

_Record = tuple[str, int, str]  # what a worker logged: (logger name, level, message)
_worker_matcher: tuple[dict[str, str], Matcher] | None = None
_worker_records: list[_Record] = []


class _Collect(logging.Handler):
    """Keeps what a job logs, to be logged again by the parent (where the handlers are)."""

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if record.exc_info:
            message += "\n" + logging.Formatter().formatException(record.exc_info)
        _worker_records.append((record.name, record.levelno, message))


def _prepare_in_worker(task: _Task) -> tuple[list[Prepared] | ParseError, list[_Record]]:
    global _worker_matcher
    root = logging.getLogger()
    if not any(isinstance(h, _Collect) for h in root.handlers):
        root.handlers[:] = [_Collect()]
    root.setLevel(task.log_level)
    failpoint("prepare-worker")
    failpoint(f"prepare-worker:{task.job.source.name}")
    _worker_records.clear()
    if _worker_matcher is None or _worker_matcher[0] != task.watchlists:
        try:
            _worker_matcher = (task.watchlists, Matcher(task.watchlists))
        except Exception as e:  # checked when saved, so a bug: every source says so
            return _unexpected(task.job, e), list(_worker_records)
    result = _prepare_job(task.job, _worker_matcher[1])
    return result, list(_worker_records)


def _prepare_job(job: Job, matcher: Matcher) -> list[Prepared] | ParseError:
    """The prepared items, or why the body could not be read: one source's failure, never the poll's."""
    try:
        return prepare_body(job.body, job.source, job.headers, job.fetched, matcher)
    except ParseError as e:
        return e
    except Exception as e:  # a bug met by one feed: logged whole, and that source alone fails
        return _unexpected(job, e)


def _unexpected(job: Job, e: Exception) -> ParseError:
    log.exception("unexpected error reading source=%r url=%s", job.source.name, redact(job.source.url))
    return ParseError(job.source.url, f"unexpected error reading the feed: {type(e).__name__}: {e}")
