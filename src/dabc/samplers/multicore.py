"""Multicore samplers on a pool of forked worker processes that survive worker deaths.

Each generation's work reaches every worker once, as cloudpickled bytes; after that only
small task tuples and result batches travel. When a worker dies (killed, out of memory),
its unfinished tasks go to the others with the same ids and a replacement is started, so
a generation never hangs and nothing is lost or counted twice.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import signal
import traceback
from multiprocessing.connection import wait

import cloudpickle

from ..errors import WorkerError
from .base import Sampler, SampleResult, WorkRequest
from .scheduling import Scheduler, make_scheduler
from .worker import execute

log = logging.getLogger("dabc.samplers")


def default_n_procs() -> int:
    """``DABC_NUM_PROCS`` if set, else the number of CPUs this process may use."""
    env = os.environ.get("DABC_NUM_PROCS")
    if env:
        try:
            return max(1, int(env))
        except ValueError:
            raise WorkerError(f"DABC_NUM_PROCS={env!r} is not a whole number.") from None
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def _worker_main(conn, parent_end) -> None:
    """A worker process: messages are (kind, token, body) with kind "work" (body: the
    pickled work of generation ``token``), "task" (body: a Task) or "stop"."""
    parent_end.close()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the master's to handle
    work = None
    while True:
        try:
            kind, token, body = conn.recv()
        except (EOFError, OSError):
            return
        if kind == "stop":
            return
        if kind == "work":
            work = cloudpickle.loads(body)
            continue
        try:
            conn.send(("batch", token, body, execute(work, body)))
        except BaseException:
            conn.send(("crash", token, body, traceback.format_exc()))


class _Worker:
    def __init__(self, ctx):
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=_worker_main, args=(child, self.conn), daemon=True)
        self.process.start()
        child.close()
        self.token = None          # generation whose work this worker holds
        self.tasks: list = []      # tasks sent and not yet answered: (token, task)


class _Pool:
    """Worker processes, restarted when they die; shared by the DYN and STAT samplers."""

    def __init__(self, n_procs: int, max_restarts: int | None = None):
        self.n_procs = n_procs
        self.max_restarts = max_restarts if max_restarts is not None else 2 * n_procs + 4
        methods = mp.get_all_start_methods()
        self.ctx = mp.get_context("fork" if "fork" in methods else "spawn")
        self.workers: list[_Worker] = []
        self.deaths = 0

    def _fill(self) -> None:
        while len(self.workers) < self.n_procs:
            self.workers.append(_Worker(self.ctx))

    def run(self, request: WorkRequest, sched: Scheduler) -> SampleResult:
        self._fill()
        token = request.work.token
        restarts = 0
        while not sched.done:
            spe = sched.seconds_per_evaluation()
            depth = 2 if spe is None or spe < 0.005 else 1
            for w in list(self.workers):
                while len(w.tasks) < depth:
                    task = sched.next_task(self.n_procs)
                    if task is None:
                        break
                    w.tasks.append((token, task))
                    try:
                        if w.token != token:
                            w.conn.send(("work", token, request.payload))
                            w.token = token
                        w.conn.send(("task", token, task))
                    except OSError:  # the worker died before we noticed: redo its tasks
                        restarts += 1
                        self._replace(w, token, sched, restarts)
                        break
            if not any(w.tasks for w in self.workers):
                raise WorkerError("sampler stalled: no task in flight and the generation is "
                                  "not complete (please report this bug)")
            by_conn = {w.conn: w for w in self.workers}
            by_sentinel = {w.process.sentinel: w for w in self.workers}
            for ready in wait(list(by_conn) + list(by_sentinel), timeout=5.0):
                w = by_conn.get(ready) or by_sentinel.get(ready)
                if w not in self.workers:
                    continue
                if ready in by_sentinel or not self._receive(w, token, sched):
                    restarts += 1
                    self._replace(w, token, sched, restarts)
        return sched.result()

    def _receive(self, w: _Worker, token, sched) -> bool:
        """Handle every message waiting on ``w``; False when the worker is gone."""
        try:
            while w.conn.poll():
                kind, tok, task, payload = w.conn.recv()
                w.tasks.remove((tok, task))
                if kind == "crash":
                    raise WorkerError(f"a worker process failed outside the model:\n{payload}")
                if tok == token:
                    sched.add(task, payload)
        except (EOFError, OSError):
            return False
        return True

    def _replace(self, w: _Worker, token, sched, restarts: int) -> None:
        self.workers.remove(w)
        w.process.join(timeout=1)
        code = w.process.exitcode
        self.deaths += 1
        log.warning("worker process %d died (exit code %s) with %d unfinished task(s); "
                    "starting a replacement", w.process.pid, code, len(w.tasks))
        for tok, task in w.tasks:
            if tok == token:
                sched.reissue(task)
        if restarts > self.max_restarts:
            self.close()
            raise WorkerError(f"worker processes died {restarts} times in one generation (last "
                              f"exit code {code}); check memory limits and the model.")
        self._fill()

    def close(self) -> None:
        for w in self.workers:
            try:
                w.conn.send(("stop", None, None))
            except OSError:
                pass
        for w in self.workers:
            w.process.join(timeout=0.5)
            if w.process.is_alive():
                w.process.kill()
                w.process.join()
            w.conn.close()
        self.workers = []

    def pids(self) -> list[int]:
        return [w.process.pid for w in self.workers]


class _MulticoreSampler(Sampler):
    """Shared by the DYN and STAT multicore samplers (see their docstrings)."""

    def __init__(self, n_procs: int | None = None):
        self.n_procs = n_procs if n_procs is not None else default_n_procs()
        self._pool: _Pool | None = None
        self._timing = None

    @property
    def worker_pids(self) -> list[int]:
        """PIDs of the live worker processes (empty between runs)."""
        return self._pool.pids() if self._pool else []

    def sample(self, request: WorkRequest) -> SampleResult:
        if self._pool is None:
            self._pool = _Pool(self.n_procs)
        sched = make_scheduler(request, self.dynamic, workers=self.n_procs,
                               timing_hint=self._timing)
        result = self._pool.run(request, sched)
        self._timing = sched.seconds_per_evaluation()
        return result

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None


class MulticoreEvalParallelSampler(_MulticoreSampler):
    """DYN on local worker processes (the default sampler).

    Workers are forked once and kept between generations; a dead worker is replaced and its
    tasks run again with the same ids, so results do not change.

    Parameters
    ----------
    n_procs : int, optional
        Worker processes; default ``$DABC_NUM_PROCS``, else the number of usable CPUs.

    Raises
    ------
    dabc.WorkerError
        From ``sample`` when workers die again and again in one generation.

    Examples
    --------
    >>> import dabc
    >>> sampler = dabc.MulticoreEvalParallelSampler(n_procs=2)
    """

    dynamic = True


class MulticoreParticleParallelSampler(_MulticoreSampler):
    """STAT on local worker processes: particle slots are spread over the workers.

    Parameters
    ----------
    n_procs : int, optional
        Worker processes; default ``$DABC_NUM_PROCS``, else the number of usable CPUs.
    """

    dynamic = False
