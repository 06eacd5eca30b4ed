"""DaskDistributedSampler: DYN sampling on a Dask cluster, with no polling loop.

The generation's work is scattered once (to every worker) and passed to tasks as a future;
each task evaluates a range of ids and is a pure function of (work, range), so a task lost
with its worker is recomputed by Dask with the identical result. If every copy of the
scattered work is lost, the work is scattered again and the unfinished tasks resubmitted.
The number of tasks in flight follows the cluster's current thread count, so
``cluster.adapt()`` works.
"""

from __future__ import annotations

import logging
import time
from typing import Any, NamedTuple

from .._compat.distributed import cancellation_check, scatter_broadcast
from ..errors import WorkerError
from .base import Sampler, SampleResult, Task, WorkRequest
from .scheduling import check_batch_size, make_scheduler
from .worker import run_task

log = logging.getLogger("dabc.samplers.dask")


def _run(payload: bytes, task: Task, key: bytes) -> tuple:
    """A Dask task: run_task, stopping early when the client cancels it (a worker cannot
    interrupt a running task, so without the check a cancelled task would hold its thread
    to its last evaluation, delaying the next generation's first tasks)."""
    return run_task(payload, task, key, cancellation_check())


class _Copy(NamedTuple):
    """A submitted copy of a task (a task may have a backup copy running too)."""

    future: Any
    task: Task


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


def local_cluster(n_workers: int | None = None, threads_per_worker: int = 1, **kwargs):
    """A ``LocalCluster`` for many short simulations: worker processes, loopback only, no
    dashboard, and :data:`LEAN_CONFIG` (Dask's own diagnostics off). ``kwargs`` go to
    ``LocalCluster``. Used by :class:`DaskDistributedSampler` when given no client."""
    import dask
    from distributed import LocalCluster

    kwargs = {"processes": True, "host": "127.0.0.1", "dashboard_address": None, **kwargs}
    with dask.config.set(LEAN_CONFIG):
        return LocalCluster(n_workers=n_workers, threads_per_worker=threads_per_worker,
                            **kwargs)


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
    """

    dynamic = True

    def __init__(self, client=None, batch_size: int | str = "auto",
                 client_max_jobs: int | None = None, no_worker_timeout: float = 60.0,
                 target_seconds: float = 0.1):
        self._fixed_size = check_batch_size(batch_size)
        self.client, self.batch_size = client, batch_size
        self.client_max_jobs, self.no_worker_timeout = client_max_jobs, no_worker_timeout
        self.target_seconds = target_seconds
        self._own_client = False
        self._cluster = None
        self._timing = None

    def _client(self):
        if self.client is None:
            from distributed import Client

            self._cluster = local_cluster()
            self.client = Client(self._cluster)
            self._own_client = True
        return self.client

    def _threads(self, client) -> int:
        waited = time.monotonic()
        while True:
            n = sum(client.nthreads().values())
            if n:
                return n
            if time.monotonic() - waited > self.no_worker_timeout:
                raise WorkerError(f"no live workers on the Dask cluster {client.scheduler.address}"
                                  f" for {self.no_worker_timeout:.0f} s; start workers or scale "
                                  "the cluster.")
            time.sleep(0.2)

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
            fut = client.submit(_run, state["work"], task, key, pure=False, key=name)
            in_flight[fut.key] = _Copy(fut, task)
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
                drop(lambda t, done=task: t.start != done.start)  # its other copy, if any
                sched.add(task, batch)
                if sched.done:
                    break
                drop(sched.wanted)
                submit_more()
                if not in_flight and not sched.done:
                    raise WorkerError("Dask sampler stalled (please report this bug)")
        finally:
            if in_flight:
                client.cancel([copy.future for copy in in_flight.values()])
            client.cancel(state["work"])
        self._timing = sched.seconds_per_evaluation()
        return sched.result()

    def close(self) -> None:
        if self._own_client and self.client is not None:
            self.client.close()
            self._cluster.close()
            self.client = self._cluster = None
            self._own_client = False
