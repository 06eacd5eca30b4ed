"""Multicore samplers on a pool of forked worker processes that survive worker deaths.

Each generation's work reaches every worker once, as cloudpickled bytes; after that only
small task tuples and result batches travel. When a worker dies (killed, out of memory),
its unfinished tasks go to the others with the same ids and a replacement is started, so
a generation never hangs and nothing is lost or counted twice.

Workers die with their master (a parent-death signal, else a watchdog thread), may be
recycled after a number of tasks or above a memory size (``max_tasks_per_worker``,
``max_worker_memory``), and each simulation may have a time limit (``simulation_timeout``):
a worker whose simulation cannot even be interrupted is killed, and that simulation counts
as failed when its task runs again.

Tasks that can no longer contribute stop at their next evaluation: the master shows each
worker, in shared memory (:class:`~dabc.samplers.worker.Monitor`), the generation it samples
and its DYN cut-off, so a task starting beyond the cut-off, or one left running when the
generation ended, does not hold its worker into the next generation (measured on `fast`
with 2 processes and a new sampler per run: 55-59k evaluations/s before, 66-80k after, in 3
interleaved pairs; in benchmarks/run_all.py's repeated runs the difference was within the
noise, 65k against 68k).
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import re
import signal
import statistics
import threading
import time
import traceback
import warnings
from dataclasses import dataclass
from multiprocessing.connection import wait

import cloudpickle

from .._compat.process import set_parent_death_signal
from ..errors import WorkerError
from .base import IDS, Batch, Sampler, SampleResult, WorkRequest
from .scheduling import Scheduler, make_scheduler
from .worker import Monitor, check_timeout, execute, set_monitor

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


class SlowSimulationWarning(RuntimeWarning):
    """A simulation has run 100 times longer than the median, and no time limit is set."""


_UNITS = {"": 1, "b": 1, "k": 10**3, "kb": 10**3, "m": 10**6, "mb": 10**6, "g": 10**9,
          "gb": 10**9, "t": 10**12, "tb": 10**12, "kib": 2**10, "mib": 2**20, "gib": 2**30,
          "tib": 2**40}


def parse_bytes(size: int | str | None, name: str = "max_worker_memory") -> int | None:
    """A size in bytes from an int or a string such as ``"500MB"`` or ``"1.5GiB"``."""
    if size is None:
        return None
    if isinstance(size, int) and not isinstance(size, bool) and size > 0:
        return size
    if isinstance(size, str):
        m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", size)
        if m and m.group(2).lower() in _UNITS and float(m.group(1)) > 0:
            return int(float(m.group(1)) * _UNITS[m.group(2).lower()])
    raise ValueError(f"{name} must be a positive number of bytes or a size such as '500MB' "
                     f"or '2GiB', not {size!r}")


def _rss() -> int:
    """This process's resident memory in bytes (Linux: /proc/self/statm; else peak RSS)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


@dataclass(frozen=True)
class _Options:
    timeout: float | None = None
    max_tasks: int | None = None
    max_memory: int | None = None


def _die_with_parent(parent: int, from_main_thread: bool) -> None:
    """Exit when the master is gone: a parent-death SIGKILL where the master's forking
    thread is its main thread (Linux), and a watchdog thread in any case."""
    if from_main_thread:
        set_parent_death_signal(signal.SIGKILL)
    if os.getppid() != parent:  # the master died before the signal was set
        os._exit(1)

    def watch():
        while True:
            time.sleep(1.0)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, name="dabc-parent-watch", daemon=True).start()


def _worker_main(conn, parent_end, monitor: Monitor, opts: _Options, parent: int,
                 from_main_thread: bool) -> None:
    """A worker process: messages are (kind, token, body) with kind "work" (body: the
    pickled work of generation ``token``), "task" (body: a Task and the indices of its
    model calls that must fail at once) or "stop". After a task it may "retire" (over a
    recycling limit): it then runs nothing more and waits for "stop"."""
    parent_end.close()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the master's to handle
    # not the master's graceful-stop handler (inherited through fork): a SIGTERM sent to
    # the whole job (SLURM) just ends a worker, while the master saves and stops
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _die_with_parent(parent, from_main_thread)
    set_monitor(monitor)
    work = None
    done = 0
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
        task, doomed, serial = body
        cancelled = monitor.cancelled_for(serial, task) if task.kind == IDS else None
        try:
            conn.send(("batch", token, task, execute(work, task, cancelled, opts.timeout,
                                                     doomed)))
        except BaseException:
            conn.send(("crash", token, task, traceback.format_exc()))
        done += 1
        reason = None
        if opts.max_tasks is not None and done >= opts.max_tasks:
            reason = f"it ran max_tasks_per_worker={opts.max_tasks} tasks"
        elif opts.max_memory is not None and (rss := _rss()) > opts.max_memory:
            reason = (f"its memory ({rss / 2**20:.0f} MiB) is above max_worker_memory="
                      f"{opts.max_memory / 2**20:.0f} MiB")
        if reason is not None:
            conn.send(("retire", token, None, reason))
            while True:  # run nothing more; the master re-queues what it sent us
                try:
                    if conn.recv()[0] == "stop":
                        return
                except (EOFError, OSError):
                    return


class _Worker:
    def __init__(self, ctx, opts: _Options):
        self.conn, child = ctx.Pipe()
        self.monitor = Monitor(ctx)
        from_main = threading.current_thread() is threading.main_thread()
        self.process = ctx.Process(target=_worker_main, daemon=True,
                                   args=(child, self.conn, self.monitor, opts, os.getpid(),
                                         from_main))
        self.process.start()
        child.close()
        self.token = None          # generation whose work this worker holds
        self.tasks: list = []      # tasks sent and not yet answered: (token, task)


class _Pool:
    """Worker processes, restarted when they die; shared by the DYN and STAT samplers."""

    def __init__(self, n_procs: int, max_restarts: int | None = None,
                 opts: _Options | None = None):
        self.n_procs = n_procs
        self.max_restarts = max_restarts if max_restarts is not None else 2 * n_procs + 4
        self.opts = opts or _Options()
        methods = mp.get_all_start_methods()
        self.ctx = mp.get_context("fork" if "fork" in methods else "spawn")
        self.workers: list[_Worker] = []
        self.deaths = 0
        self.recycled = 0
        self.timeouts_killed = 0
        # (token, start, stop) -> indices of model calls that hung beyond interruption
        self.doomed: dict[tuple, frozenset] = {}
        self.serial = 0  # of the generation being sampled (shown to workers to cancel tasks)

    def _fill(self) -> None:
        while len(self.workers) < self.n_procs:
            w = _Worker(self.ctx, self.opts)
            w.monitor.open(self.serial)
            self.workers.append(w)

    def run(self, request: WorkRequest, sched: Scheduler) -> SampleResult:
        self.serial += 1
        for w in self.workers:
            w.monitor.open(self.serial)
        self._fill()
        try:
            return self._run(request, sched)
        finally:
            for w in self.workers:  # what still runs of this generation stops early
                w.monitor.close()

    def _run(self, request: WorkRequest, sched: Scheduler) -> SampleResult:
        token = request.work.token
        restarts = 0
        self._per_eval: list[float] = []  # seconds per evaluation of each batch so far
        self._warned = False
        while not sched.done:
            spe = sched.seconds_per_evaluation()
            depth = 2 if spe is None or spe < 0.005 else 1
            for w in list(self.workers):
                while len(w.tasks) < depth:
                    task = sched.next_task(self.n_procs)
                    if task is None:
                        break
                    w.tasks.append((token, task))
                    doomed = self.doomed.get((token, task.start, task.stop), frozenset())
                    try:
                        if w.token != token:
                            w.conn.send(("work", token, request.payload))
                            w.token = token
                        w.conn.send(("task", token, (task, doomed, self.serial)))
                    except OSError:  # the worker died before we noticed: redo its tasks
                        restarts += 1
                        self._replace(w, token, sched, restarts)
                        break
            if not any(w.tasks for w in self.workers):
                raise WorkerError("sampler stalled: no task in flight and the generation is "
                                  "not complete (please report this bug)")
            by_conn = {w.conn: w for w in self.workers}
            by_sentinel = {w.process.sentinel: w for w in self.workers}
            for ready in wait(list(by_conn) + list(by_sentinel), timeout=0.5):
                w = by_conn.get(ready) or by_sentinel.get(ready)
                if w not in self.workers:
                    continue
                status = "gone" if ready in by_sentinel else self._receive(w, token, sched)
                if status == "retire":
                    self._replace(w, token, sched, restarts, retired=True)
                elif status == "gone":
                    restarts += 1
                    self._replace(w, token, sched, restarts)
            cutoff = sched.cutoff  # DYN: later tasks may stop at once
            if cutoff is not None:
                for w in self.workers:
                    w.monitor.set_cutoff(cutoff)
            self._watch(request, sched)
        return sched.result()

    def _watch(self, request: WorkRequest, sched: Scheduler) -> None:
        """Kill a worker whose simulation overran ``simulation_timeout`` without being
        interrupted; with no limit, warn once per generation of a very slow simulation."""
        now, timeout = time.monotonic(), self.opts.timeout
        for w in list(self.workers):
            start = w.monitor.start
            if not start or not w.tasks:
                continue
            elapsed = now - start
            tok, task = w.tasks[0]  # a worker runs its tasks in the order sent
            if timeout is not None:
                if elapsed > timeout + max(1.0, 0.25 * timeout):
                    self._kill_overrun(w, tok, task, elapsed, request, sched)
                continue
            if self._warned or not self._per_eval and sched.timing_hint is None:
                continue
            median = (statistics.median(self._per_eval) if self._per_eval
                      else sched.timing_hint) * max(request.work.granularity, 1)
            if elapsed > max(1.0, 100 * median):
                self._warned = True
                msg = (f"a simulation of generation {request.generation} has been running "
                       f"for {elapsed:.1f} s, over 100 times the median time per simulation "
                       f"so far ({median:.3g} s), in worker process {w.process.pid} "
                       f"(model call {w.monitor.calls} of task {task.kind} "
                       f"{task.start}..{task.stop - 1}). No simulation_timeout is set, so "
                       "the generation waits for it; pass simulation_timeout=<seconds> to "
                       "the sampler to count such simulations as failed.")
                log.warning(msg)
                warnings.warn(msg, SlowSimulationWarning, stacklevel=4)

    def _kill_overrun(self, w: _Worker, tok, task, elapsed: float, request: WorkRequest,
                      sched: Scheduler) -> None:
        call = w.monitor.calls
        key = (tok, task.start, task.stop)
        self.doomed[key] = self.doomed.get(key, frozenset()) | {call}
        log.warning("worker process %d: a simulation (model call %d of task %s %d..%d) has "
                    "run %.1f s despite simulation_timeout=%g s and could not be interrupted "
                    "(a C call?); killing the worker: the simulation counts as failed and "
                    "the rest of its task runs again", w.process.pid, call, task.kind,
                    task.start, task.stop - 1, elapsed, self.opts.timeout)
        w.process.kill()
        self.timeouts_killed += 1
        self._replace(w, request.work.token, sched, 0, killed=True)

    def _receive(self, w: _Worker, token, sched) -> str:
        """Handle every message waiting on ``w``: "ok", "gone" (the worker died) or
        "retire" (it asked to be replaced)."""
        try:
            while w.conn.poll():
                kind, tok, task, payload = w.conn.recv()
                if kind == "retire":
                    log.info("recycling worker process %d: %s", w.process.pid, payload)
                    return "retire"
                w.tasks.remove((tok, task))
                if kind == "crash":
                    raise WorkerError(f"a worker process failed outside the model:\n{payload}")
                if tok == token:
                    if isinstance(payload, Batch) and len(payload) and not payload.stopped_early:
                        self._per_eval.append(payload.seconds / len(payload))
                    sched.add(task, payload)
        except (EOFError, OSError):
            return "gone"
        return "ok"

    def _replace(self, w: _Worker, token, sched, restarts: int, retired: bool = False,
                 killed: bool = False) -> None:
        self.workers.remove(w)
        if retired:
            try:
                w.conn.send(("stop", None, None))
            except OSError:
                pass
        w.process.join(timeout=1 if not retired else 5)
        if w.process.is_alive():
            w.process.kill()
            w.process.join()
        w.conn.close()
        code = w.process.exitcode
        if retired:
            self.recycled += 1
        elif not killed:
            self.deaths += 1
            log.warning("worker process %d died (exit code %s) with %d unfinished task(s); "
                        "starting a replacement", w.process.pid, code, len(w.tasks))
        why = ("their worker was recycled" if retired else
               "their worker was killed" if killed else "their worker was lost")
        for tok, task in w.tasks:
            if tok == token:
                sched.reissue(task, why)
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

    def __init__(self, n_procs: int | None = None, simulation_timeout: float | None = None,
                 max_tasks_per_worker: int | None = None,
                 max_worker_memory: int | str | None = None):
        self.n_procs = n_procs if n_procs is not None else default_n_procs()
        if max_tasks_per_worker is not None and (
                isinstance(max_tasks_per_worker, bool) or not isinstance(max_tasks_per_worker, int)
                or max_tasks_per_worker < 1):
            raise ValueError(f"max_tasks_per_worker must be a positive integer or None, not "
                             f"{max_tasks_per_worker!r}")
        self.simulation_timeout = check_timeout(simulation_timeout)
        self.max_tasks_per_worker = max_tasks_per_worker
        self.max_worker_memory = max_worker_memory
        self._options = _Options(self.simulation_timeout, max_tasks_per_worker,
                                 parse_bytes(max_worker_memory))
        self._pool: _Pool | None = None
        self._timing = None

    @property
    def worker_pids(self) -> list[int]:
        """PIDs of the live worker processes (empty between runs)."""
        return self._pool.pids() if self._pool else []

    def sample(self, request: WorkRequest) -> SampleResult:
        """Sample one generation on the worker processes (started on first use)."""
        if self._pool is None:
            self._pool = _Pool(self.n_procs, opts=self._options)
        sched = make_scheduler(request, self.dynamic, workers=self.n_procs,
                               timing_hint=self._timing)
        result = self._pool.run(request, sched)
        self._timing = sched.seconds_per_evaluation()
        return result

    def close(self) -> None:
        """Stop the worker processes (new ones start on the next ``sample``)."""
        if self._pool is not None:
            self._pool.close()
            self._pool = None


class MulticoreEvalParallelSampler(_MulticoreSampler):
    """DYN on local worker processes (the default sampler).

    Workers are forked once and kept between generations; a dead worker is replaced and its
    tasks run again with the same ids, so results do not change. Workers die with the
    master, even when it is killed with SIGKILL (a parent-death signal on Linux, and a
    watchdog thread).

    Parameters
    ----------
    n_procs : int, optional
        Worker processes; default ``$DABC_NUM_PROCS``, else the number of usable CPUs.
    simulation_timeout : float, optional
        Seconds one simulation (one model call; one block call for a vectorized model) may
        run. A simulation over the limit is interrupted (``SIGALRM`` in the worker) and
        counts as a failed evaluation, with the reason "simulation exceeded
        simulation_timeout=... s with parameters {...}", under ``max_failure_rate``. A
        worker stuck where it cannot be interrupted (a C call holding the GIL) is killed
        once its simulation has run ``simulation_timeout`` plus max(1 s, a quarter of it),
        and that simulation counts as failed when its task runs again. Default None: no
        limit, but a simulation running over 100 times the median time (and over 1 s)
        draws one warning per generation (``SlowSimulationWarning`` of
        ``dabc.samplers.multicore``, and a log record on ``dabc.samplers``).
    max_tasks_per_worker : int, optional
        Replace a worker process after it has run this many tasks. Default None: never.
    max_worker_memory : int or str, optional
        Replace a worker process whose resident memory (read after each task) is above
        this size: bytes, or a string such as ``"500MB"`` or ``"2GiB"``. Default None:
        never. A recycled worker first returns its result; tasks already sent to it run
        again elsewhere with the same ids, so results are identical. Each recycling is
        logged at INFO on ``dabc.samplers``.

    Raises
    ------
    ValueError
        If an argument is out of range.
    dabc.WorkerError
        From ``sample`` when workers die again and again in one generation.

    Examples
    --------
    >>> import dabc
    >>> sampler = dabc.MulticoreEvalParallelSampler(n_procs=2, simulation_timeout=60)
    """

    dynamic = True


class MulticoreParticleParallelSampler(_MulticoreSampler):
    """STAT on local worker processes: particle slots are spread over the workers.

    Parameters
    ----------
    n_procs, simulation_timeout, max_tasks_per_worker, max_worker_memory
        As for :class:`MulticoreEvalParallelSampler`.

    Raises
    ------
    ValueError
        If an argument is out of range.

    Examples
    --------
    >>> import dabc
    >>> sampler = dabc.MulticoreParticleParallelSampler(n_procs=4)
    >>> abc = dabc.ABCSMC(model, prior, sampler=sampler)      # doctest: +SKIP
    """

    dynamic = False
