"""The Dask sampler's pull mode: one long-running task per worker thread, fed id ranges
through ``distributed.Queue``.

In the push mode (:mod:`dabc.samplers.dask`) every id range is a Dask task: submitted,
scheduled, run, reported, gathered and released, a dozen messages and about 7 ms of CPU
across client, scheduler and worker per range. In the pull mode each generation submits one
*puller* task per worker thread (and one spare). A puller unpickles the generation's work
once, says hello on the generation's result queue, then takes id ranges from its own inbox
queue, evaluates them and puts each result on the result queue; the master keeps two ranges
in every inbox, so a puller never waits for the master. A range costs four small scheduler
calls (put, get on each side), and the master drains every waiting result in one call.

Guarantees, as in the Redis sampler: the master knows which ranges each puller holds.

- Determinism: every range is evaluated from (seed, t, id) wherever it runs; the DYN
  scheduler keeps the first ``n`` accepted ids, so the population is the multicore
  sampler's for the same seed.
- Loss: when a puller's worker leaves the cluster (killed, closed by the scheduler, retired)
  or Dask restarts the puller elsewhere (a second hello), its unfinished ranges are
  re-issued with the same ids. A range that arrives twice counts once.
- Stragglers: once nothing new is needed, an idle puller gets a backup copy of the oldest
  unfinished range another puller holds below the cutoff (the first result counts).
- End of a generation: every inbox gets a stop message and every puller is cancelled; a
  puller in the middle of a range stops at its next evaluation.
- ``adapt()``: the master follows the cluster's thread count and keeps one spare puller
  waiting, which is also the demand ``adapt()`` sees.

A puller holds its worker thread for the whole generation: analyses sharing one cluster
take turns generation by generation instead of interleaving their tasks (use the push mode
to share a cluster finely). ``client_max_jobs`` does not apply.

The work travels inside each puller task (through the scheduler, once per puller and
generation), so a lost worker never loses it. A queue whose puller was killed keeps one
reference on the scheduler (a few bytes) until the scheduler stops.
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
POLL = (0.002, 0.05)  # a puller with an empty inbox polls it, backing off between these


def _pull(payload: bytes, key: bytes, k: int, inbox_name: str, outbox_name: str,
          timeout: float | None = None) -> int:
    """A puller (runs on a worker for one generation): evaluate the id ranges that arrive on
    ``inbox_name`` and put each result on ``outbox_name``; returns the ranges it evaluated.

    Messages in: ``[start, stop]``, or None to stop. Out: ``["hello", k, incarnation,
    worker address]`` first, then ``["result", k, incarnation, start, stop, pickled
    batch]``. A cancelled puller stops at its next evaluation.
    """
    from distributed import Queue, get_client, get_worker

    cancelled = cancellation_check()
    client = get_client()
    inbox, outbox = Queue(inbox_name, client=client), Queue(outbox_name, client=client)
    incarnation = uuid.uuid4().hex
    done = 0
    try:
        work = load_work(payload, key)
        outbox.put(["hello", k, incarnation, get_worker().address])
        waiting, wait = [], POLL[0]
        while not (cancelled is not None and cancelled()):
            if not waiting:
                # Poll (never a blocking get with a timeout: the scheduler logs each
                # expired get as an ERROR); the inbox is rarely empty while work remains.
                waiting = inbox.get(batch=True)
                if not waiting:
                    time.sleep(wait)
                    wait = min(2 * wait, POLL[1])
                    continue
            msg, wait = waiting.pop(0), POLL[0]
            if msg is None:
                break
            task = Task(IDS, int(msg[0]), int(msg[1]))
            batch = execute(work, task, cancelled, timeout)
            if batch.stopped_early:
                break
            outbox.put(["result", k, incarnation, task.start, task.stop,
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
    inbox: Any = None               # opened on its first hello
    incarnation: str | None = None  # from its latest hello; None: not started yet
    worker: str | None = None       # its worker's address; None: lost or not started
    held: list = field(default_factory=list)  # ranges given to it, unfinished, in order
    since: float = 0.0              # time.monotonic() of its last message


def sample_pull(sampler, client, request: WorkRequest) -> SampleResult:
    """Sample one generation in pull mode (see the module docstring).

    Parameters
    ----------
    sampler : DaskDistributedSampler
        The sampler whose settings apply (task sizes, timeouts, the timing it keeps
        between generations).
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
    from distributed import KilledWorker, Queue

    sched = make_scheduler(request, True, batch_size=sampler._fixed_size,
                           timing_hint=sampler._timing, target_seconds=sampler.target_seconds,
                           min_task_fraction=0.5)
    threads = sampler._threads(client)
    key = request.work.token.encode()
    tag = f"dabc-{request.work.token.replace(':', '-')}-{uuid.uuid4().hex[:8]}"
    outbox = Queue(f"{tag}-out", client=client)
    payload = request.payload
    pullers: dict[int, _Puller] = {}
    backed_up: set[int] = set()
    per_eval: list[float] = []
    warned = False

    def add_puller():
        # The puller creates its inbox; the master opens it on the puller's hello (a queue
        # made here would cost a scheduler round trip before each submission).
        k = len(pullers)
        fut = client.submit(_pull, payload, key, k, f"{tag}-in-{k}", outbox.name,
                            sampler.simulation_timeout, pure=False, key=f"{tag}-pull-{k}")
        pullers[k] = _Puller(fut, f"{tag}-in-{k}")

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
            while len(p.held) < DEPTH:
                task = sched.next_task(threads)
                if task is None:
                    if not p.held:
                        task = backup_for(p)
                    if task is None:
                        break
                p.inbox.put([task.start, task.stop])
                if not p.held:  # an idle puller starts on it now (for watch_slow)
                    p.since = time.monotonic()
                p.held.append(task)

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
            if p.future.status in ("error", "cancelled", "lost") or (
                    p.future.status == "finished" and p.worker is not None):
                # it will never run again here: replace it
                lose(p, f"puller {k} ended ({p.future.status})")
                p.incarnation = "gone"
        live = sum(p.incarnation != "gone" for p in pullers.values())
        for _ in range(threads + 1 - live):
            add_puller()

    def handle(msg):
        kind, k, incarnation = msg[0], int(msg[1]), msg[2]
        p = pullers[k]
        p.since = time.monotonic()
        if kind == "hello":
            if p.incarnation not in (None, incarnation):
                lose(p, f"puller {k} started again elsewhere")
            p.incarnation, p.worker = incarnation, msg[3]
            if p.inbox is None:
                p.inbox = Queue(p.inbox_name, client=client)
            return
        task = Task(IDS, int(msg[3]), int(msg[4]))
        batch = pickle.loads(msg[5])
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

    checked = 0.0
    began, first = time.monotonic(), None
    ticking = threading.Event()
    ticker = threading.Thread(target=_tick, args=(outbox, ticking), daemon=True,
                              name="dabc-dask-pull-tick")
    try:
        ticker.start()
        while not sched.done:
            if time.monotonic() - checked > CHECK_EVERY:
                check_cluster()
                watch_slow()
                checked = time.monotonic()
            feed()
            msgs = [outbox.get()]  # a result, a hello or the ticker's tick
            msgs += outbox.get(batch=True)
            for msg in msgs:
                if msg[0] != "tick":
                    if first is None:
                        first = time.monotonic()
                    handle(msg)
                if sched.done:
                    break
    finally:
        decided = time.monotonic()
        log.debug("generation %d in pull mode: first message after %.3f s, decided after "
                  "%.3f s", request.generation, (first or decided) - began, decided - began)
        # Stopping the pullers takes a round trip per puller: done beside the engine's work
        # between generations (the next generation's pullers start as these end).
        stopper = threading.Thread(target=_stop, args=(client, ticker, ticking, outbox,
                                                       list(pullers.values())),
                                   daemon=True, name="dabc-dask-pull-stop")
        stopper.start()
        sampler._pull_stopper = stopper
    sampler._timing = sched.seconds_per_evaluation()
    return sched.result()


def _stop(client, ticker: threading.Thread, ticking: threading.Event, outbox,
          pullers: list[_Puller]) -> None:
    """End a generation's pullers: a stop message in every inbox (an idle puller returns at
    once), every puller cancelled (a busy one stops at its next evaluation), queues closed."""
    ticking.set()
    if ticker.is_alive():
        ticker.join(5)
    for p in pullers:
        try:
            if p.inbox is not None:
                p.inbox.put(None, timeout=5)
        except Exception:  # noqa: BLE001 - the puller is cancelled anyway
            pass
    try:
        client.cancel([p.future for p in pullers])
    except Exception:  # noqa: BLE001 - the client is closing: its tasks go with it
        pass
    for q in [outbox, *(p.inbox for p in pullers if p.inbox is not None)]:
        try:
            q.close()
        except Exception:  # noqa: BLE001 - the client is closing
            pass
