"""The Dask sampler's pull mode: one long-running task per worker thread, fed id ranges
through ``distributed.Queue``.

In the push mode (:mod:`dabc.samplers.dask`) every id range is a Dask task: submitted,
scheduled, run, reported, gathered and released, a dozen messages and about 7 ms of CPU
across client, scheduler and worker per range. In the pull mode the sampler starts one
*puller* task per worker thread (and one spare) when it samples its first generation, and
keeps them for the whole run. Each generation, the master puts the generation's work in
every puller's inbox queue (the puller unpickles it once), then id ranges; the puller
evaluates them and puts each result on the sampler's result queue. The master keeps two
ranges in every inbox, so a puller never waits for the master; a range costs four small
scheduler calls (put, get on each side), and the master drains every waiting result in one
call. A puller with an empty inbox waits on its own ``distributed.Event``, which the
master sets after filling the inbox, so the next generation starts on every worker a few
messages after the master sends it, not after a task submission, a start and a hello
(about 40 ms per generation here, 5-7 % of a ``sleep10`` generation).

Guarantees, as in the Redis sampler: the master knows which ranges each puller holds.

- Determinism: every range is evaluated from (seed, t, id) wherever it runs; the DYN
  scheduler keeps the first ``n`` accepted ids, so the population is the multicore
  sampler's for the same seed.
- Loss: when a puller's worker leaves the cluster (killed, closed by the scheduler, retired)
  or Dask restarts the puller elsewhere (a second hello), its unfinished ranges are
  re-issued with the same ids, and a restarted puller is sent the generation's work again.
  A range that arrives twice counts once.
- Stragglers: once nothing new is needed, an idle puller gets a backup copy of the oldest
  unfinished range another puller holds below the cutoff (the first result counts).
- End of a generation: every worker is told that the generation ended
  (``Client.run``, beside the engine's work between generations); a puller in the middle
  of one of its ranges stops at its next evaluation, and a range of an ended generation
  still waiting in an inbox is dropped unevaluated (ranges carry their generation's token).
- End of the run (:meth:`DaskDistributedSampler.close`): every inbox gets a stop message,
  every puller is cancelled and every queue closed.
- ``adapt()``: the master follows the cluster's thread count and keeps one spare puller
  waiting, which is also the demand ``adapt()`` sees.

A puller holds its worker thread for the whole run: analyses sharing one cluster take turns
run by run instead of interleaving their tasks (use the push mode to share a cluster
finely). ``client_max_jobs`` does not apply.

The work travels through the scheduler once per puller and generation, in the inbox. A
queue whose puller was killed keeps one reference on the scheduler (a few bytes) until the
scheduler stops.
"""

from __future__ import annotations

import logging
import pickle
import statistics
import threading
import time
import uuid
import warnings
from dataclasses import dataclass, field
from typing import Any

from .._compat.distributed import cancellation_check
from .base import IDS, SampleResult, Task, WorkRequest
from .multicore import SlowSimulationWarning
from .scheduling import make_scheduler
from .worker import execute, load_work

log = logging.getLogger("dabc.samplers.dask")

DEPTH = 2          # ranges kept in each puller's inbox (one running, one waiting)
CHECK_EVERY = 0.5  # seconds between looks at the cluster's workers

_ENDED: set[str] = set()
"""On a worker: the tokens of generations the master has ended (see :func:`_end`)."""


def _end(token: str) -> None:
    """Run on every worker by the master when a generation ends: its pullers stop the
    generation's ranges at their next evaluation and drop those still queued."""
    _ENDED.add(token)


def _pull(k: int, inbox_name: str, bell_name: str, outbox_name: str,
          timeout: float | None = None) -> int:
    """A puller (runs on a worker for the whole run): evaluate the id ranges that arrive on
    ``inbox_name`` with the latest work received, and put each result on ``outbox_name``;
    returns the ranges it evaluated.

    Messages in: ``["work", token, payload, key]``, ``["range", token, start, stop]``, or
    None to stop. Out: ``["hello", k, incarnation, worker address]`` first, then
    ``["result", k, incarnation, token, start, stop, pickled batch]``. A range whose token
    is not the latest work's, or whose generation ended (:func:`_end`), is dropped; one
    running when its generation ends stops at its next evaluation, unreported.

    With an empty inbox the puller waits on the ``distributed.Event`` ``bell_name``, which
    the master sets after putting work in an idle puller's inbox: a wake-up one message
    after the work, without polling (a queue ``get`` with a timeout would do, but the
    scheduler logs each expired one as an ERROR; an expired event wait is silent). It looks
    at its inbox again at least every :data:`CHECK_EVERY` seconds, and stops there once
    its task is cancelled (the master closed the pool, or died).
    """
    from distributed import Event, Queue, get_client, get_worker

    cancelled = cancellation_check()
    client = get_client()
    inbox, outbox = Queue(inbox_name, client=client), Queue(outbox_name, client=client)
    bell = Event(bell_name, client=client)
    incarnation = uuid.uuid4().hex
    done = 0
    work, token = None, None

    def stop_range() -> bool:
        return token in _ENDED or (cancelled is not None and cancelled())

    try:
        outbox.put(["hello", k, incarnation, get_worker().address])
        waiting: list = []
        while not (cancelled is not None and cancelled()):
            if not waiting:
                waiting = inbox.get(batch=True)
            if not waiting:
                # clear, look again, then wait: a bell rung after the second look is kept
                bell.clear()
                waiting = inbox.get(batch=True)
                if not waiting:
                    bell.wait(CHECK_EVERY)
                    continue
            msg = waiting.pop(0)
            if msg is None:
                break
            if msg[0] == "work":
                work, token = load_work(msg[2], msg[3]), msg[1]
                continue
            if msg[1] != token or work is None or token in _ENDED:
                continue  # a range of an ended generation
            task = Task(IDS, int(msg[2]), int(msg[3]))
            batch = execute(work, task, stop_range, timeout)
            if batch.stopped_early:
                continue
            outbox.put(["result", k, incarnation, token, task.start, task.stop,
                        pickle.dumps(batch, protocol=pickle.HIGHEST_PROTOCOL)])
            done += 1
    finally:
        for q in (inbox, outbox):
            try:
                q.close()
            except Exception:  # noqa: BLE001 - the cluster is going away
                pass
    return done


def _tick(outbox, stop: threading.Event) -> None:
    """Put a tick on the master's result queue every CHECK_EVERY seconds, so that its
    blocking get returns to look at the cluster (a get with a timeout would do, but the
    scheduler logs every expired one as an ERROR)."""
    while not stop.wait(CHECK_EVERY):
        try:
            outbox.put(["tick"])
        except Exception:  # noqa: BLE001 - the master's own calls report a lost scheduler
            return


@dataclass
class _Puller:
    """What the master knows of one puller."""

    future: Any
    inbox_name: str
    bell_name: str
    inbox: Any = None               # opened on its first hello
    bell: Any = None                # the Event it waits on when its inbox is empty
    incarnation: str | None = None  # from its latest hello; None: not started yet
    worker: str | None = None       # its worker's address; None: lost or not started
    token: str | None = None        # the generation whose work it was sent last
    held: list = field(default_factory=list)  # ranges given to it, unfinished, in order
    since: float = 0.0              # time.monotonic() of its last message


class PullPool:
    """The pullers of one sampler on one client, kept from its first generation to
    :meth:`close` (see the module docstring).

    Parameters
    ----------
    client : distributed.Client
        The cluster's client.
    timeout : float, optional
        The sampler's ``simulation_timeout``.
    """

    def __init__(self, client, timeout: float | None):
        from distributed import Queue

        self.client, self.timeout = client, timeout
        self.tag = f"dabc-pull-{uuid.uuid4().hex[:12]}"
        self.outbox = Queue(f"{self.tag}-out", client=client)
        self.pullers: dict[int, _Puller] = {}
        self._ticking = threading.Event()
        self._ticker = threading.Thread(target=_tick, args=(self.outbox, self._ticking),
                                        daemon=True, name="dabc-dask-pull-tick")
        self._ticker.start()
        self._ender: threading.Thread | None = None

    def add_puller(self) -> None:
        """Submit one more puller (it says hello on the outbox once it runs)."""
        # The puller creates its inbox; the master opens it on the puller's hello (a queue
        # made here would cost a scheduler round trip before each submission).
        k = len(self.pullers)
        inbox, bell = f"{self.tag}-in-{k}", f"{self.tag}-bell-{k}"
        fut = self.client.submit(_pull, k, inbox, bell, self.outbox.name, self.timeout,
                                 pure=False, key=f"{self.tag}-pull-{k}")
        self.pullers[k] = _Puller(fut, inbox, bell)

    def end_generation(self, token: str) -> None:
        """Tell every worker that generation ``token`` ended, from a thread (one round trip
        to all workers, beside the engine's work between generations)."""
        self.wait_ended()

        def tell():
            try:
                self.client.run(_end, token)
            except Exception as exc:  # noqa: BLE001 - a lost worker drops its ranges anyway
                log.debug("telling the workers that a generation ended failed: %s", exc)

        self._ender = threading.Thread(target=tell, daemon=True, name="dabc-dask-pull-end")
        self._ender.start()

    def wait_ended(self) -> None:
        """Wait (at most 30 s) until the workers were told of the last generation's end."""
        if self._ender is not None:
            self._ender.join(30)
            self._ender = None

    def close(self) -> None:
        """Stop every puller: a stop message in every inbox (an idle puller returns at
        once), every puller cancelled (a busy one stops at its next evaluation), queues
        closed."""
        self.wait_ended()
        self._ticking.set()
        if self._ticker.is_alive():
            self._ticker.join(5)
        pullers = list(self.pullers.values())
        for p in pullers:
            try:
                if p.inbox is not None:
                    p.inbox.put(None, timeout=5)
                    p.bell.set()
            except Exception:  # noqa: BLE001 - the puller is cancelled anyway
                pass
        try:
            self.client.cancel([p.future for p in pullers])
        except Exception:  # noqa: BLE001 - the client is closing: its tasks go with it
            pass
        for q in [self.outbox, *(p.inbox for p in pullers if p.inbox is not None)]:
            try:
                q.close()
            except Exception:  # noqa: BLE001 - the client is closing
                pass
        self.pullers.clear()


def sample_pull(sampler, client, request: WorkRequest) -> SampleResult:
    """Sample one generation in pull mode (see the module docstring).

    Parameters
    ----------
    sampler : DaskDistributedSampler
        The sampler whose settings apply (task sizes, timeouts, the timing it keeps
        between generations); its :class:`PullPool` is made on the first call and kept
        until ``sampler.close()``.
    client : distributed.Client
        The cluster's client.
    request : WorkRequest
        The generation to sample.

    Returns
    -------
    SampleResult
        The generation, as the DYN scheduler made it.

    Raises
    ------
    dabc.WorkerError
        If no worker is left for ``no_worker_timeout`` seconds.

    Examples
    --------
    Called by ``DaskDistributedSampler(client, mode="pull").sample(request)``:

    >>> import dabc
    >>> sampler = dabc.DaskDistributedSampler(client, mode="pull")  # doctest: +SKIP
    """
    from distributed import Event, KilledWorker, Queue

    pool = sampler._pull_pool
    if pool is None or pool.client is not client:
        if pool is not None:
            pool.close()
        pool = sampler._pull_pool = PullPool(client, sampler.simulation_timeout)
    pool.wait_ended()
    sched = make_scheduler(request, True, batch_size=sampler._fixed_size,
                           timing_hint=sampler._timing, target_seconds=sampler.target_seconds,
                           min_task_fraction=0.5)
    threads = sampler._threads(client)
    token = request.work.token
    work_msg = ["work", token, request.payload, token.encode()]
    pullers = pool.pullers
    backed_up: set[int] = set()
    per_eval: list[float] = []
    warned = False

    def lose(p: _Puller, why: str):
        for task in p.held:
            if sched.wanted(task):
                sched.reissue(task, why)
        p.held.clear()
        p.worker = None

    def feed():
        for p in pullers.values():
            if p.worker is None:
                continue
            ring = not p.held  # it may be waiting on its bell
            if p.token != token:
                p.inbox.put(work_msg)
                p.token = token
            while len(p.held) < DEPTH:
                task = sched.next_task(threads)
                if task is None:
                    if not p.held:
                        task = backup_for(p)
                    if task is None:
                        break
                p.inbox.put(["range", token, task.start, task.stop])
                if not p.held:  # an idle puller starts on it now (for watch_slow)
                    p.since = time.monotonic()
                p.held.append(task)
            if ring and p.held:
                p.bell.set()

    def backup_for(idle: _Puller) -> Task | None:
        """A second copy of the oldest unfinished wanted range another puller holds (a
        range is pure: both copies give the same batch and the first counts)."""
        held = sorted((t for p in pullers.values() if p is not idle for t in p.held),
                      key=lambda t: t.start)
        for task in held:
            if task.start not in backed_up and sched.wanted(task):
                backed_up.add(task.start)
                log.debug("backup copy of evaluations %d..%d", task.start, task.stop - 1)
                return task
        return None

    def check_cluster():
        """Follow the workers: re-issue the ranges of pullers whose worker left; keep
        ``threads`` pullers plus one waiting; raise a puller's own error."""
        nonlocal threads
        alive = client.nthreads()
        if not alive:
            threads = sampler._threads(client)  # waits, or raises "no live workers"
            alive = client.nthreads()
        threads = sum(alive.values()) or threads
        for k, p in pullers.items():
            if p.worker is not None and p.worker not in alive:
                lose(p, f"worker {p.worker} left the cluster")
            if p.future.status == "error":
                exc = p.future.exception()
                if not isinstance(exc, KilledWorker):
                    raise exc
            if p.incarnation != "gone" and (
                    p.future.status in ("error", "cancelled", "lost") or (
                        p.future.status == "finished" and p.worker is not None)):
                # it will never run again here: replace it
                lose(p, f"puller {k} ended ({p.future.status})")
                p.incarnation = "gone"
        live = sum(p.incarnation != "gone" for p in pullers.values())
        for _ in range(threads + 1 - live):
            pool.add_puller()

    def handle(msg):
        kind, k, incarnation = msg[0], int(msg[1]), msg[2]
        p = pullers[k]
        p.since = time.monotonic()
        if kind == "hello":
            if p.incarnation not in (None, incarnation):
                lose(p, f"puller {k} started again elsewhere")
                p.token = None  # the new incarnation has no work yet
            p.incarnation, p.worker = incarnation, msg[3]
            if p.inbox is None:
                p.inbox = Queue(p.inbox_name, client=client)
                p.bell = Event(p.bell_name, client=client)
            return
        if incarnation != p.incarnation or msg[3] != token:
            return  # from a generation that ended, or an incarnation that was replaced
        task = Task(IDS, int(msg[4]), int(msg[5]))
        batch = pickle.loads(msg[6])
        if task in p.held:
            p.held.remove(task)
        if len(batch) and not batch.stopped_early:
            per_eval.append(batch.seconds / len(batch))
        sched.add(task, batch)
        for q in pullers.values():  # ranges beyond the cutoff: no need to wait for them
            q.held = [t for t in q.held if sched.wanted(t)]

    def watch_slow():
        """Warn once when a puller has been on one range for 100 times its median
        expected time (and over 1 s) while no limit is set."""
        nonlocal warned
        if warned or sampler.simulation_timeout is not None or not per_eval:
            return
        median, now = statistics.median(per_eval), time.monotonic()
        for p in pullers.values():
            if p.worker is None or not p.held:
                continue
            task = p.held[0]
            expected = median * (task.stop - task.start)
            if now - p.since > max(1.0, 100 * expected):
                msg = (f"a task of generation {request.generation} (evaluations "
                       f"{task.start}..{task.stop - 1}) has been running for over "
                       f"{now - p.since:.1f} s, over 100 times its median expected time "
                       f"({expected:.3g} s): one of its simulations may never return. "
                       "No simulation_timeout is set, so the generation waits for it; "
                       "pass simulation_timeout=<seconds> to DaskDistributedSampler to "
                       "count such simulations as failed.")
                log.warning(msg)
                warnings.warn(msg, SlowSimulationWarning, stacklevel=4)
                warned = True
                return

    for p in pullers.values():
        p.held.clear()  # the last generation's ranges: its pullers drop them unevaluated
    checked = 0.0
    began, first = time.monotonic(), None
    # hellos and stale results that came in between generations
    waiting = pool.outbox.get(batch=True) if pullers else []
    try:
        while not sched.done:
            for msg in waiting:
                if msg[0] != "tick":
                    if first is None and msg[0] == "result" and msg[3] == token:
                        first = time.monotonic()
                    handle(msg)
                if sched.done:
                    break
            if sched.done:
                break
            if time.monotonic() - checked > CHECK_EVERY:
                check_cluster()
                watch_slow()
                checked = time.monotonic()
            feed()
            waiting = [pool.outbox.get()]  # a result, a hello or the ticker's tick
            waiting += pool.outbox.get(batch=True)
    finally:
        decided = time.monotonic()
        log.debug("generation %d in pull mode: first result after %.3f s, decided after "
                  "%.3f s", request.generation, (first or decided) - began, decided - began)
        pool.end_generation(token)
    sampler._timing = sched.seconds_per_evaluation()
    return sched.result()
