"""Worker processes that each run one job at a time under a time budget: a job that runs past
it has its process killed and replaced, and that job alone fails. The budget is CPU seconds
where /proc tells them (a busy machine slows a job down without it being over budget), and a
job is stopped at WALL_FACTOR times the budget in wall time whatever its CPU time.

A thread can be asked to stop but not made to; a process can. So whatever reads untrusted
bodies (bot.ingest.prepare) runs here: a parser stuck in a quadratic corner of C code costs
its job's budget and one process start (~0.3 s), never the poll. Processes are fresh
interpreters (``python -c``), not forks (a fork next to the scheduler's and the Slack app's
threads is unsafe), and, unlike multiprocessing's spawn, they do not import the parent's main
module (``newsalert``'s is the whole CLI and Slack app: about 1.5 s and 23 MB more per process).

``Pool.run`` hands jobs to the idle processes from a supervising thread, so they keep working
while the caller stores what came back, and yields one result per job, in order: the target's
return value, or ``Stopped`` for a job that ran out of time or whose process died.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib
import logging
import os
import pickle
import signal
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from typing import Any

log = logging.getLogger("newsalert.workers")

_READY = "ready"
START_TIMEOUT = 60.0  # a process that has not started by then is taken for one that cannot
# The budget is CPU time where the system tells it (Linux /proc): a busy machine (other
# processes, the other workers, this one storing) must not stop a feed that would have finished.
# Whatever the CPU time, a job is stopped at this many times its budget in wall time.
WALL_FACTOR = 3.0
MAX_START_FAILURES = 3  # in a row: then processes are taken to be unavailable here
_alive: weakref.WeakSet[_Worker] = weakref.WeakSet()  # stopped at exit, busy or not


@dataclass(frozen=True)
class Stopped:
    """A job that did not finish: it ran past its budget, or the process running it died."""

    timed_out: bool
    detail: str  # "after 10 s", "killed by signal 9"


INLINE = object()  # yielded for a job when no worker process can be started at all


@dataclass(frozen=True)
class _Failed:
    """What a worker sends back when the target raised or its result could not be pickled."""

    detail: str


_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _cpu_seconds(pid: int | None) -> float | None:
    """User + system CPU seconds of a process, from /proc (None where there is no /proc)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            fields = stat.read().rpartition(b")")[2].split()
        return (int(fields[11]) + int(fields[12])) / _TICKS  # utime, stime (fields 14, 15)
    except (OSError, ValueError, IndexError):
        return None


def _wake(fd: int) -> None:
    with contextlib.suppress(BlockingIOError):
        os.write(fd, b"x")


def _serve(inbox: Connection, outbox: Connection, target: Callable[[Any], Any]) -> None:
    """A worker process: run ``target`` on each job received, send back each result."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle; it stops us
    outbox.send(_READY)
    while True:
        try:
            job = inbox.recv()
        except (EOFError, OSError):  # the parent is gone or closed the pipe: done
            return
        try:
            reply = pickle.dumps(target(job), pickle.HIGHEST_PROTOCOL)
        except Exception as e:  # the target's own bug: reported as this job's failure
            reply = pickle.dumps(_Failed(f"{type(e).__name__}: {e}"))
        try:
            outbox.send_bytes(reply)
        except OSError:  # the parent died or gave up on this job while it ran
            return


def worker_main() -> None:
    """What a worker process runs: ``python -c ... INBOX_FD OUTBOX_FD module:function``."""
    inbox, outbox, target = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    module, _, name = target.partition(":")
    function = getattr(importlib.import_module(module), name)
    _serve(Connection(inbox, writable=False), Connection(outbox, readable=False), function)


@dataclass(eq=False)
class _Worker:
    process: subprocess.Popen[bytes]
    inbox: Connection  # what it sends
    outbox: Connection  # what it is sent
    started: float
    ready: bool = False
    job: int | None = None  # index of the job it is running
    deadline: float = 0.0  # when to look at it again
    dispatched: float = 0.0
    cpu_at_dispatch: float | None = None  # its CPU seconds then, if the system says

    def stop(self) -> None:
        self.process.kill()  # SIGKILL: code stuck in C sees nothing gentler
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(5)
        self.inbox.close()
        self.outbox.close()

    def exit_detail(self) -> str:
        try:
            code = self.process.wait(1)
        except subprocess.TimeoutExpired:
            return "stopped answering"
        if code < 0:
            return f"killed by signal {-code}"
        return f"exited with status {code}"


@atexit.register
def _stop_all() -> None:
    for worker in list(_alive):
        worker.stop()


@dataclass(eq=False)
class _Run:
    """One call of Pool.run: what the supervising thread and the consumer share."""

    jobs: Sequence[Any]
    timeout: float
    window: int  # jobs dispatched or done but not yet taken by the consumer, at most
    results: dict[int, Any] = field(default_factory=dict)
    next_job: int = 0  # the next to dispatch
    taken: int = 0  # how many results the consumer has taken
    cancelled: bool = False
    broken: bool = False  # the supervising thread failed: the rest is prepared by the caller
    changed: threading.Condition = field(default_factory=threading.Condition)


class Pool:
    """Worker processes running ``target``, a module-level function named "module:function"
    that takes and returns picklable values."""

    def __init__(self, target: str):
        self._target = target  # "module:function", imported by each process
        self._workers: list[_Worker] = []
        # Processes in a row that died (or could not start) before finishing any job; one that
        # finishes a job resets it. Bounds the restarts where processes cannot work at all.
        self._start_failures = 0
        self.replaced = 0  # processes killed for running out of time, or found dead

    @property
    def usable(self) -> bool:
        """False after MAX_START_FAILURES processes in a row died before finishing a job (or
        could not start): jobs are then INLINE."""
        return self._start_failures < MAX_START_FAILURES

    def start(self, count: int) -> None:
        """Start processes (without waiting for them) until there are ``count``."""
        while len(self._workers) < count and self.usable:
            self._spawn()

    def shrink(self, keep: int) -> None:
        """Stop all but ``keep`` processes (ready ones are kept first)."""
        self._workers.sort(key=lambda w: not w.ready)
        for worker in self._workers[keep:]:
            worker.stop()
        del self._workers[keep:]

    def close(self) -> None:
        self.shrink(0)

    def run(self, jobs: Sequence[Any], *, workers: int, timeout: float) -> Iterator[Any]:
        """One result per job, in order; each job may run ``timeout`` seconds in its process."""
        if not jobs:
            return
        self.start(min(workers, len(jobs)))
        run = _Run(jobs, timeout, window=max(2, workers) * 4)
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_w, False)  # a full pipe already says "wake up"
        supervisor = threading.Thread(
            target=self._supervise, args=(run, wake_r), name="newsalert-parse-supervisor", daemon=True
        )
        supervisor.start()
        try:
            for index in range(len(jobs)):
                with run.changed:
                    while index not in run.results:
                        run.changed.wait()
                    result = run.results.pop(index)
                    run.taken = index + 1
                _wake(wake_w)  # the window moved: the supervisor may dispatch more
                yield result
        finally:
            with run.changed:
                run.cancelled = run.taken < len(jobs)
            _wake(wake_w)
            supervisor.join()
            os.close(wake_r)
            os.close(wake_w)

    # -- the supervising thread ---------------------------------------------------------------

    def _supervise(self, run: _Run, wake: int) -> None:
        try:
            while not self._finished(run):
                self._dispatch(run)
                waiting = [w for w in self._workers if w.job is not None or not w.ready]
                now = time.monotonic()
                deadlines = [w.deadline if w.ready else w.started + START_TIMEOUT for w in waiting]
                delay = max(0.0, min(deadlines) - now) if deadlines else None
                for ready in wait([wake, *(w.inbox for w in waiting)], delay):
                    if ready == wake:
                        os.read(wake, 64)
                    else:
                        self._receive(run, next(w for w in waiting if w.inbox is ready))
                self._enforce_deadlines(run)
        except Exception:  # a bug here must not leave the consumer waiting forever
            log.exception("parse supervisor failed: the rest of this batch is read inline, without a budget")
            with run.changed:
                run.broken = True
                for index in range(run.taken, len(run.jobs)):
                    run.results.setdefault(index, INLINE)
                run.next_job = len(run.jobs)
                run.changed.notify_all()
        finally:
            if run.cancelled or run.broken:
                for worker in [w for w in self._workers if w.job is not None]:
                    self._workers.remove(worker)  # its job's result is not wanted any more
                    worker.stop()

    def _finished(self, run: _Run) -> bool:
        with run.changed:
            if run.cancelled:
                return True
            return run.next_job == len(run.jobs) and all(w.job is None for w in self._workers)

    def _dispatch(self, run: _Run) -> None:
        if not self._workers and self.usable:
            self._spawn()
        if not self._workers:  # nothing can run in a process: the caller prepares the rest itself
            log.warning(
                "no parse worker process can be started: feeds are read inline, without a time budget"
            )
            with run.changed:
                for index in range(run.next_job, len(run.jobs)):
                    run.results[index] = INLINE
                run.next_job = len(run.jobs)
                run.changed.notify_all()
            return
        for worker in [w for w in self._workers if w.ready and w.job is None]:
            with run.changed:
                if run.next_job >= len(run.jobs) or run.next_job >= run.taken + run.window:
                    return
                index = run.next_job
            try:
                worker.outbox.send(run.jobs[index])
            except (OSError, ValueError):  # died while idle: the job never reached it
                self._start_failures += 1
                self._replace(worker)
                continue
            with run.changed:
                run.next_job = index + 1
            worker.job, worker.dispatched = index, time.monotonic()
            worker.deadline = worker.dispatched + run.timeout
            worker.cpu_at_dispatch = _cpu_seconds(worker.process.pid)

    def _receive(self, run: _Run, worker: _Worker) -> None:
        try:
            message = worker.inbox.recv()
        except (EOFError, OSError):
            self._lost(run, worker, Stopped(timed_out=False, detail=worker.exit_detail()))
            return
        if message == _READY:
            worker.ready = True
            return
        if worker.job is None:  # cannot happen: a result is only sent for a job it was given
            log.error("parse worker sent a result for no job: ignored")
            return
        if isinstance(message, _Failed):
            log.error("parse worker could not return a result: %s", message.detail)
        self._finish(run, worker, message)

    def _enforce_deadlines(self, run: _Run) -> None:
        now = time.monotonic()
        for worker in list(self._workers):
            if worker.job is not None and now >= worker.deadline:
                if worker.inbox.poll():  # it did finish: its result is waiting to be read
                    self._receive(run, worker)
                    continue
                used = self._cpu_used(worker)
                if (
                    used is not None
                    and used < run.timeout
                    and now < worker.dispatched + WALL_FACTOR * run.timeout
                ):
                    # Slowed down, not over budget: look again when it could have used it all.
                    worker.deadline = now + max(0.05, run.timeout - used)
                    continue
                spent = f"{used:.1f} s of CPU" if used is not None else f"{now - worker.dispatched:.1f} s"
                self._lost(run, worker, Stopped(timed_out=True, detail=f"after {spent}"))
            elif not worker.ready and now >= worker.started + START_TIMEOUT:
                log.error("parse worker did not start within %g s", START_TIMEOUT)
                self._workers.remove(worker)
                worker.stop()
                self._start_failures += 1

    @staticmethod
    def _cpu_used(worker: _Worker) -> float | None:
        now = _cpu_seconds(worker.process.pid)
        if now is None or worker.cpu_at_dispatch is None:
            return None
        return now - worker.cpu_at_dispatch

    def _lost(self, run: _Run, worker: _Worker, why: Stopped) -> None:
        """The worker is gone or is being stopped: its job (if any) ends as ``why``."""
        if worker.job is None:  # died before it was ready, or while idle
            self._start_failures += 1
            log.error(
                "parse worker died %s (%s)", "while idle" if worker.ready else "while starting", why.detail
            )
            self._workers.remove(worker)
            worker.stop()
            if self.usable:
                self._spawn()
            return
        self._finish(run, worker, why)
        self._replace(worker)

    def _finish(self, run: _Run, worker: _Worker, result: Any) -> None:
        if not isinstance(result, Stopped):
            self._start_failures = 0
        with run.changed:
            assert worker.job is not None
            run.results[worker.job] = result
            run.changed.notify_all()
        worker.job = None

    def _replace(self, worker: _Worker) -> None:
        self.replaced += 1
        self._workers.remove(worker)
        worker.stop()
        if self.usable:
            self._spawn()

    def _spawn(self) -> None:
        from_parent, to_child = os.pipe()  # (read end, write end)
        from_child, to_parent = os.pipe()
        # The parent's sys.path, as multiprocessing would give it (bench scripts add the tree).
        code = f"import sys; sys.path[:] = {sys.path!r}; import bot.ingest.workers as w; w.worker_main()"
        try:
            process = subprocess.Popen(
                [sys.executable, "-c", code, str(from_parent), str(to_parent), self._target],
                stdin=subprocess.DEVNULL,
                pass_fds=(from_parent, to_parent),
                close_fds=True,
            )
        except OSError as e:  # out of processes or memory: counted, the caller falls back
            log.error("cannot start a parse worker: %s", e)
            self._start_failures += 1
            os.close(to_child)
            os.close(from_child)
            return
        finally:
            os.close(from_parent)  # the child's ends: ours would keep the pipes open after it dies
            os.close(to_parent)
        worker = _Worker(
            process,
            Connection(from_child, writable=False),
            Connection(to_child, readable=False),
            time.monotonic(),
        )
        self._workers.append(worker)
        _alive.add(worker)
