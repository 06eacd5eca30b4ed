"""DaskDistributedSampler: DYN sampling on a Dask cluster, with no polling loop.

The generation's work is scattered once (to every worker) and passed to tasks as a future;
each task evaluates a range of ids and is a pure function of (work, range), so a task lost
with its worker is recomputed by Dask with the identical result. If every copy of the
scattered work is lost, the work is scattered again and the unfinished tasks resubmitted.
The number of tasks in flight follows the cluster's current thread count, so
``cluster.adapt()`` works.

With ``simulation_timeout``, a simulation that overruns is interrupted in its worker thread
(an asynchronous exception; Python code only) and counts as failed. Without it, a task that
runs 100 times longer than the median draws one warning per generation.
"""

from __future__ import annotations

import ast
import inspect
import logging
import statistics
import sys
import threading
import time
import warnings
from typing import Any, NamedTuple

from .._compat.distributed import cancellation_check, scatter_broadcast
from ..errors import WorkerError
from .base import Sampler, SampleResult, Task, WorkRequest
from .multicore import SlowSimulationWarning
from .scheduling import check_batch_size, make_scheduler
from .worker import check_timeout, run_task

log = logging.getLogger("dabc.samplers.dask")


def _run(payload: bytes, task: Task, key: bytes, timeout: float | None = None) -> tuple:
    """A Dask task: run_task, stopping early when the client cancels it (a worker cannot
    interrupt a running task, so without the check a cancelled task would hold its thread
    to its last evaluation, delaying the next generation's first tasks). ``timeout``
    limits each simulation."""
    return run_task(payload, task, key, cancellation_check(), timeout)


class _Copy(NamedTuple):
    """A submitted copy of a task (a task may have a backup copy running too)."""

    future: Any
    task: Task
    submitted: float = 0.0  # time.monotonic() at submission


#: Dask settings that cut the CPU an idle or busy cluster spends on itself. Every worker's
#: statistical profiler samples its threads 100 times a second, memory monitors poll 10
#: times a second and the event loops tick every 20 ms: measured on 2 cores with 8 workers,
#: an idle LocalCluster used 0.42 cores by default and 0.14 with these settings. They only
#: turn off diagnostics (the dashboard's profile page stays empty).
LEAN_CONFIG = {
    "distributed.worker.profile.enabled": False,
    "distributed.worker.memory.monitor-interval": "1s",
    "distributed.admin.system-monitor.gil.enabled": False,
    "distributed.admin.tick.interval": "100ms",
}


def _loopback(address: str | None, what: str) -> str | None:
    """A dashboard address on loopback: ``":8787"`` becomes ``"127.0.0.1:8787"``; any other
    host than a loopback one is refused."""
    if address is None:
        return None
    host, sep, port = str(address).rpartition(":")
    if not sep:
        host, port = str(address), ""
    host = host.strip("[]")
    if host in ("", "0.0.0.0", "::"):
        if host:
            raise ValueError(f"{what}={address!r} would serve the unauthenticated Dask "
                             "dashboard on every interface; use '127.0.0.1:PORT' (and an SSH "
                             "tunnel to reach it from elsewhere).")
        host = "127.0.0.1"
    if host not in ("127.0.0.1", "localhost", "::1") and not host.startswith("127."):
        raise ValueError(f"{what}={address!r} is not a loopback address; dabc serves the "
                         "unauthenticated Dask dashboard on loopback only: use "
                         "'127.0.0.1:PORT' (and an SSH tunnel to reach it from elsewhere).")
    return f"{host}:{port}" if port else f"{host}:8787"


def _is_main_test(node: ast.expr) -> bool:
    """Whether ``node`` is ``__name__ == "__main__"`` (either way round)."""
    if not (isinstance(node, ast.Compare) and len(node.ops) == 1
            and isinstance(node.ops[0], ast.Eq)):
        return False
    sides = [node.left, node.comparators[0]]
    return (any(isinstance(x, ast.Name) and x.id == "__name__" for x in sides)
            and any(isinstance(x, ast.Constant) and x.value == "__main__" for x in sides))


def unguarded_main_line() -> tuple[str, int] | None:
    """Where the main script, run as ``python script.py``, is starting worker processes
    outside an ``if __name__ == "__main__":`` block: (file, line); None when it is inside
    one, or when there is no such script (an interactive session, ``python -m``).

    A spawned worker process runs the main script again before it starts; code outside the
    guard then runs again in every worker.

    Returns
    -------
    tuple of (str, int) or None
        The script's path and the line of its top-level code that led here.

    Examples
    --------
    >>> unguarded_main_line() is None  # in an interactive session or a doctest
    True
    """
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if path is None or getattr(main, "__spec__", None) is not None:
        return None
    frame = inspect.currentframe()
    while frame is not None and not (frame.f_globals is vars(main)
                                     and frame.f_code.co_name == "<module>"):
        frame = frame.f_back
    if frame is None:
        return None
    line = frame.f_lineno
    try:
        with open(path, encoding="utf-8") as f:
            tree = ast.parse(f.read())
    except (OSError, SyntaxError, ValueError):
        return None
    for node in tree.body:
        if (isinstance(node, ast.If) and _is_main_test(node.test)
                and node.lineno <= line <= (node.end_lineno or line)):
            return None
    return path, line


def local_cluster(n_workers: int | None = None, threads_per_worker: int = 1,
                  dashboard_address: str | None = None,
                  worker_dashboard_address: str | None = None, **kwargs):
    """A ``LocalCluster`` for many short simulations: worker processes, loopback only, no
    HTTP port at all, and :data:`LEAN_CONFIG` (Dask's own diagnostics off).

    Dask's scheduler serves HTTP pages (metrics, worker logs and call stacks) without
    authentication even with ``dashboard_address=None``; here the scheduler and the workers
    listen only on their loopback comm ports (:mod:`dabc._compat.distributed_http`).

    The worker processes are forked, as the multicore sampler's are (where the platform can
    fork: not on Windows), so a plain script without an ``if __name__ == "__main__":`` guard
    works: a spawned worker would run the script again before starting
    (:mod:`dabc._compat.distributed_fork`). A forked worker starts as a copy of the master,
    so its memory use starts at the master's. Where the platform cannot fork, a script that
    starts the cluster outside the guard stops at once with one line naming its line
    (:func:`unguarded_main_line`).

    Parameters
    ----------
    n_workers : int, optional
        Worker processes (default: Dask's choice for this machine).
    threads_per_worker : int, default 1
        Threads per worker process.
    dashboard_address : str, optional
        Ask for the scheduler's dashboard, e.g. ``"127.0.0.1:8787"`` or ``":8787"`` (made
        loopback); a non-loopback host raises ``ValueError``. Default None: no HTTP port.
    worker_dashboard_address : str, optional
        The same for each worker (``":0"``: a free port each). Default None: none.
    **kwargs
        Passed on to ``distributed.LocalCluster``.

    Returns
    -------
    distributed.LocalCluster
        The started cluster (close it, or let :class:`DaskDistributedSampler` do so).

    Raises
    ------
    SystemExit
        (exit status 1) Where worker processes cannot be forked, when a script run as
        ``python script.py`` starts the cluster outside ``if __name__ == "__main__":``.
    ValueError
        When a dashboard address is not on loopback.

    Examples
    --------
    >>> from distributed import Client
    >>> from dabc.samplers.dask import local_cluster
    >>> with local_cluster(n_workers=2) as cluster, Client(cluster) as client:  # doctest: +SKIP
    ...     sampler = DaskDistributedSampler(client)
    """
    import dask
    from distributed import LocalCluster

    from .._compat import distributed_fork as forked
    from .._compat import distributed_http as quiet

    dashboard_address = _loopback(dashboard_address, "dashboard_address")
    worker_dashboard_address = _loopback(worker_dashboard_address, "worker_dashboard_address")
    kwargs = {"processes": True, "host": "127.0.0.1", "dashboard_address": dashboard_address,
              "worker_dashboard_address": worker_dashboard_address, **kwargs}
    cls = LocalCluster
    forking = kwargs["processes"] and forked.fork_available()
    if kwargs["processes"] and not forking and (where := unguarded_main_line()) is not None:
        raise SystemExit(
            f"dabc: {where[0]}, line {where[1]}: this platform cannot fork Dask's worker "
            "processes, and a spawned worker runs the script again; put the script's code "
            'under  if __name__ == "__main__":  (or pass a Client to DaskDistributedSampler).')
    quiet_ok = quiet.quiet_cluster_supported()
    if quiet_ok and dashboard_address is None:
        cls = quiet.QuietLocalCluster
    if kwargs["processes"] and "worker_class" not in kwargs:
        silent = quiet_ok and worker_dashboard_address is None
        if forking:
            kwargs["worker_class"] = forked.QuietForkingNanny if silent else forked.ForkingNanny
        elif silent:
            kwargs["worker_class"] = quiet.QuietNanny
    if not quiet_ok:
        log.warning("this version of distributed cannot start without HTTP ports: the "
                    "scheduler serves its HTTP pages on 127.0.0.1:8787 (loopback only)")
    with dask.config.set(LEAN_CONFIG):
        return cls(n_workers=n_workers, threads_per_worker=threads_per_worker, **kwargs)


class DaskDistributedSampler(Sampler):
    """DYN on ``distributed``: an existing ``Client`` (any scheduler address, with
    ``distributed.Security`` if needed), or a local cluster started on first use.

    Parameters
    ----------
    client : distributed.Client, optional
        The cluster to use; default a local cluster of worker processes on loopback
        (:func:`local_cluster`), closed by :meth:`close`.
    batch_size : int or "auto", default "auto"
        Evaluation ids per task; ``"auto"`` sizes tasks from measured simulation times.
    client_max_jobs : int, optional
        Tasks in flight; default twice the cluster's threads (followed under ``adapt()``).
    no_worker_timeout : float, default 60
        Seconds without any worker before failing with "no live workers".
    target_seconds : float, default 0.1
        Aimed worker time per task: long enough to amortise Dask's per-task cost for
        millisecond simulations, short enough that the last tasks leave workers idle briefly.
    simulation_timeout : float, optional
        Seconds one simulation (one model call; one block call for a vectorized model) may
        run. An overrunning simulation is interrupted in its worker thread by an
        asynchronous exception and counts as a failed evaluation ("simulation exceeded
        simulation_timeout=... s with parameters {...}"), under ``max_failure_rate``. This
        interrupts Python code (loops, ``time.sleep`` in short steps), not a single C call
        or a long ``time.sleep`` (they fail once they return). Default None: no limit, but
        a task running over 100 times its median expected time (and over 1 s) draws one
        warning per generation (``dabc.samplers.multicore.SlowSimulationWarning`` and a
        log record on ``dabc.samplers.dask``).
    mode : {"push", "pull"}, default "push"
        ``"push"``: every id range is a Dask task (pure, recomputed by Dask when its worker
        is lost). ``"pull"``: one long-running task per worker thread, kept for the whole
        run, takes id ranges from a ``distributed.Queue`` and the master re-issues the
        ranges of a lost worker (:mod:`dabc.samplers.dask_pull`); a range costs a few small
        scheduler calls instead of a task's dozen messages, which pays for simulations of
        milliseconds. The pullers hold their worker threads until :meth:`close`.

    Raises
    ------
    ValueError
        If ``batch_size``, ``simulation_timeout`` or ``mode`` is out of range.

    Examples
    --------
    A local cluster started with the run and closed after it (worker processes on
    loopback; a plain script needs no ``if __name__ == "__main__":`` guard):

    >>> import dabc
    >>> sampler = dabc.DaskDistributedSampler()
    >>> abc = dabc.ABCSMC(model, prior, sampler=sampler)      # doctest: +SKIP
    >>> history = abc.run(observed, db="sqlite:///results.db")  # doctest: +SKIP

    An existing cluster, through its scheduler's address:

    >>> from distributed import Client
    >>> client = Client("tls://scheduler:8786", security=sec)  # doctest: +SKIP
    >>> sampler = dabc.DaskDistributedSampler(client)           # doctest: +SKIP
    """

    dynamic = True

    def __init__(self, client=None, batch_size: int | str = "auto",
                 client_max_jobs: int | None = None, no_worker_timeout: float = 60.0,
                 target_seconds: float = 0.1, simulation_timeout: float | None = None,
                 mode: str = "push"):
        if mode not in ("push", "pull"):
            raise ValueError(f"mode must be 'push' or 'pull', not {mode!r}")
        self.mode = mode
        self._fixed_size = check_batch_size(batch_size)
        self.simulation_timeout = check_timeout(simulation_timeout)
        self.client, self.batch_size = client, batch_size
        self.client_max_jobs, self.no_worker_timeout = client_max_jobs, no_worker_timeout
        self.target_seconds = target_seconds
        self._own_client = False
        self._cluster = None
        self._timing = None
        self._pull_pool = None  # pull mode: the run's pullers (dabc.samplers.dask_pull)

    def _client(self):
        if self.client is None:
            from distributed import Client

            cluster = local_cluster()
            try:
                self.client = Client(cluster)
            except BaseException:
                cluster.close()
                raise
            self._cluster = cluster
            self._own_client = True
            log.info("started a local Dask cluster of %d worker processes on loopback "
                     "(scheduler %s)", len(cluster.workers), cluster.scheduler_address)
        return self.client

    def start(self) -> None:
        """Start the local cluster, when no client was given (a given client is used as is).

        Raises
        ------
        Exception
            Whatever ``distributed`` raises when the cluster cannot start.
        """
        self._client()

    def _threads(self, client) -> int:
        waited = time.monotonic()
        beacon = None  # a waiting task: adapt() scales up only for tasks it can see
        try:
            while True:
                n = sum(client.nthreads().values())
                if n:
                    return n
                if beacon is None:
                    beacon = client.submit(int, pure=False,
                                           key=f"dabc-waiting-for-workers-{time.time_ns()}")
                if time.monotonic() - waited > self.no_worker_timeout:
                    raise WorkerError(f"no live workers on the Dask cluster "
                                      f"{client.scheduler.address} for "
                                      f"{self.no_worker_timeout:.0f} s; start workers or scale "
                                      "the cluster.")
                time.sleep(0.2)
        finally:
            if beacon is not None:
                beacon.release()

    def _scatter(self, client, payload: bytes, tries: int = 3):
        """Put the work on every worker; retried when a worker dies while receiving it.

        Each try has a deadline (10 s plus 1 s per MB): a broadcast to a worker that was
        killed but not yet removed by the scheduler can otherwise wait forever.
        """
        timeout = 10.0 + len(payload) / 1e6
        for attempt in range(tries):
            try:
                return scatter_broadcast(client, payload, timeout)
            except OSError as exc:  # CommClosedError, TimeoutError and friends
                if attempt == tries - 1:
                    raise WorkerError(f"could not send the work to the Dask workers "
                                      f"({tries} tries): {exc}") from exc
                log.warning("sending the work to the Dask workers failed (%s); trying again",
                            exc)
                self._threads(client)

    def sample(self, request: WorkRequest) -> SampleResult:
        """Sample one generation on the cluster (starting a local one on first use).

        Raises
        ------
        dabc.WorkerError
            If no worker joins within ``no_worker_timeout`` or the work cannot be sent.
        """
        from distributed import as_completed

        client = self._client()
        if self.mode == "pull":
            from .dask_pull import sample_pull

            return sample_pull(self, client, request)
        # Near a generation's end, keep tasks at least half the target: a Dask round trip
        # costs tens of ms on a busy machine, so shorter tasks leave workers idle (sleep10
        # with 8 workers on 2 cores: efficiency 0.58 with a tenth, 0.61-0.66 with half).
        sched = make_scheduler(request, True, batch_size=self._fixed_size,
                               timing_hint=self._timing, target_seconds=self.target_seconds,
                               min_task_fraction=0.5)
        threads = self._threads(client)
        key = request.work.token.encode()
        tag = request.work.token.replace(":", "-")
        in_flight: dict[str, _Copy] = {}
        backed_up: set[int] = set()  # start ids of tasks that have a second copy running
        pending = as_completed(with_results=True, loop=client.loop)
        checked = time.monotonic()
        state = {"work": self._scatter(client, request.payload), "round": 0}

        def rescatter():
            """The scattered work was lost with its workers: wait for workers, scatter again."""
            nonlocal threads, checked
            log.warning("every copy of generation %d's work was lost with its workers; "
                        "sending it again", request.generation)
            threads, checked = self._threads(client), time.monotonic()
            client.cancel(state["work"])
            state["work"] = self._scatter(client, request.payload)
            state["round"] += 1

        def submit_more():
            nonlocal threads, checked
            if time.monotonic() - checked > 0.5:  # follow adapt(): re-read the thread count
                threads, checked = sum(client.nthreads().values()) or threads, time.monotonic()
            limit = self.client_max_jobs or 2 * threads
            suffix = f"-r{state['round']}" if state["round"] else ""
            while len(in_flight) < limit:
                task = sched.next_task(threads)
                if task is None:
                    back_up(suffix)
                    return
                submit(task, f"dabc-{tag}-{task.start}-{task.stop}{suffix}")

        def submit(task: Task, name: str):
            fut = client.submit(_run, state["work"], task, key, self.simulation_timeout,
                                pure=False, key=name)
            in_flight[fut.key] = _Copy(fut, task, time.monotonic())
            pending.add(fut)

        def back_up(suffix):
            """Nothing new is needed, only the unfinished tasks below the cutoff: run a second
            copy of each (a task is pure, so both give the same result and the first to
            arrive counts), so that a task queued behind another or on a slow worker does
            not hold up the generation while other workers sit idle."""
            for copy in sorted(in_flight.values(), key=lambda c: c.task.start):
                task = copy.task
                if task.start not in backed_up and sched.wanted(task):
                    backed_up.add(task.start)
                    log.debug("backup copy of evaluations %d..%d", task.start, task.stop - 1)
                    submit(task, f"dabc-{tag}-{task.start}-{task.stop}{suffix}-backup")

        def drop(keep):
            """Cancel every copy in flight for which ``keep(task)`` is False."""
            for k, copy in list(in_flight.items()):
                if not keep(copy.task):
                    copy.future.cancel()
                    del in_flight[k]

        per_eval: list[float] = []  # seconds per evaluation of each task so far
        watch_done = threading.Event()
        if self.simulation_timeout is None:
            threading.Thread(target=self._watch_slow, daemon=True, name="dabc-slow-watch",
                             args=(client, request, sched, in_flight, per_eval,
                                   watch_done)).start()
        try:
            submit_more()
            for fut, res in pending:
                entry = in_flight.pop(fut.key, None)
                if entry is None:
                    continue  # cancelled by us, or from an earlier round
                if fut.status == "error":
                    _, exc, tb = res
                    raise exc.with_traceback(tb)
                if fut.status != "finished":  # cancelled by the cluster: the work was lost
                    lost = {entry.task.start: entry.task}
                    for copy in in_flight.values():
                        copy.future.cancel()
                        lost[copy.task.start] = copy.task
                    for task in lost.values():
                        sched.reissue(task)
                    in_flight.clear()
                    backed_up.clear()
                    rescatter()
                    submit_more()
                    continue
                task, batch = res
                if len(batch) and not batch.stopped_early:
                    per_eval.append(batch.seconds / len(batch))
                drop(lambda t, done=task: t.start != done.start)  # its other copy, if any
                sched.add(task, batch)
                if sched.done:
                    break
                drop(sched.wanted)
                submit_more()
                if not in_flight and not sched.done:
                    raise WorkerError("Dask sampler stalled (please report this bug)")
        finally:
            watch_done.set()
            if in_flight:
                client.cancel([copy.future for copy in in_flight.values()])
            client.cancel(state["work"])
        self._timing = sched.seconds_per_evaluation()
        return sched.result()

    @staticmethod
    def _watch_slow(client, request: WorkRequest, sched, in_flight: dict, per_eval: list,
                    done: threading.Event) -> None:
        """Warn once when a task has been *executing* (not queued: ``Client.call_stack``
        lists only running tasks) for 100 times its median expected time (per-evaluation
        median times its size, at least 1 s) while no limit is set."""
        running_since: dict[str, float] = {}
        while not done.wait(0.5):
            if per_eval:
                median = statistics.median(per_eval)
            elif sched.timing_hint is not None:
                median = sched.timing_hint
            else:
                continue
            now = time.monotonic()
            limits = {}
            for copy in list(in_flight.values()):
                expected = median * (copy.task.stop - copy.task.start)
                limit = max(1.0, 100 * expected)
                if now - copy.submitted > limit:
                    limits[copy.future.key] = (copy, limit, expected)
            if not limits:
                continue
            try:
                stacks = client.call_stack(keys=list(limits))
            except Exception:  # noqa: BLE001 - a diagnostic only: never fail the run
                continue
            executing = {k for per_worker in stacks.values() for k in per_worker}
            for key, (copy, limit, expected) in limits.items():
                if key not in executing:
                    continue
                since = running_since.setdefault(key, now)
                if now - since > limit:
                    task = copy.task
                    msg = (f"a task of generation {request.generation} (evaluations "
                           f"{task.start}..{task.stop - 1}) has been running for over "
                           f"{now - since:.1f} s, over 100 times its median expected time "
                           f"({expected:.3g} s): one of its simulations may never return. "
                           "No simulation_timeout is set, so the generation waits for it; "
                           "pass simulation_timeout=<seconds> to DaskDistributedSampler to "
                           "count such simulations as failed.")
                    log.warning(msg)
                    warnings.warn(msg, SlowSimulationWarning, stacklevel=2)
                    return

    def close(self) -> None:
        """Stop the pullers of the pull mode, and close the local cluster this sampler
        started (a given client stays open)."""
        if self._pull_pool is not None:  # pull mode: stop the run's pullers
            self._pull_pool.close()
            self._pull_pool = None
        if self._own_client and self.client is not None:
            self.client.close()
            self._cluster.close()
            self.client = self._cluster = None
            self._own_client = False
