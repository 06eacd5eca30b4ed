"""A discrete-event simulation of one dabc master feeding W workers (Redis or Dask sampler).

    python benchmarks/scale_sim.py [--capacity results/coordination_capacity.json]
                                   [--real results/coordination_real.json]
                                   [--workers 100,1000,10000] [--sims 0.01,0.1,1,10]

What is simulated (one event queue, ``heapq``):

- the master, one thread that handles one result at a time (FIFO): ``master_task`` CPU
  seconds per result (issuing the next tasks included) plus ``master_eval`` per evaluation
  in it; the Redis master also spends ``tick_base + tick_per_worker * W`` every 0.5 s on
  its periodic tick (dead-worker check, queue clean-up, progress);
- the server (redis-server) or scheduler (Dask), one FIFO server that spends
  ``server_task`` per task, slowed by the background load of the workers' heartbeats and
  idle polls (``server_idle_per_worker`` CPU seconds per second and worker);
- W workers, each running one task at a time: ``size * sim_seconds`` plus
  ``worker_task`` seconds of its own overhead;
- latencies: a Redis worker claims from the server (one round trip) and delivers its
  result straight into the master's list; a Dask task goes client -> scheduler -> worker
  and back, and the client fetches the result (about two round trips).

The samplers' own rules are reproduced, not idealised: DYN's id ranges and cut-off (the
population is the first n accepted ids; the generation ends once every id up to the n-th
accepted one is in), the auto batch size of ``DynamicScheduler._size`` (target seconds per
task, split of the expected remaining need over 2 tasks per worker, the minimum task
fraction: Redis 0.05 s and 0.1, Dask 0.1 s and 0.5), the tasks in flight (Redis: queue,
claims and results not yet handled kept at 2 W, every waiting result handled before the
next refill; Dask: 2 W futures, results waiting counted), Dask's backup copies of
unfinished tasks once nothing new is needed and its cancellation of unwanted tasks (a
running task stops at its next evaluation), and the fact that a task still running when
its generation ends keeps its worker busy (Redis cannot cancel it; Dask stops it after the
current evaluation). Between generations the
master is busy with the engine (fitting, epsilon, storage) for the measured gap.
Acceptance is deterministic: of ids ``[0, k)`` exactly ``floor(k * n / N)`` are accepted, so
that the n-th accepted id is ``N - 1``, with N the simulations the generation needs.

Efficiency is defined as in bench_distributed.py: ``sum(N) * sim_seconds / W / wall``.

Calibration (``calibrate``) uses only benchmarks/coordination.py's ``capacity`` output (CPU
per task of master, server and workers at batch size 1, the engine's CPU per evaluation,
round trips, idle loads, the Redis tick at 1,000 and 10,000 workers, the Dask scatter per
worker) and, for the machine's load during a run, the stretch factor (wall time / CPU time
of a spinning probe process) that ``coordination.py`` records. The validation against the
real 100-worker runs takes from those runs only their workload (simulations per
generation, which DYN makes identical on every sampler, taken from the single-core
reference run of the same seed), the engine's start-up and between-generation time (from
the same single-core run) and the stretch factor measured during the run; nothing is
fitted to the runs' efficiencies.
"""

from __future__ import annotations

import argparse
import heapq
import json
import math
import sys
from collections import deque
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"


@dataclass(frozen=True)
class Costs:
    """Per-task costs and latencies (seconds), as measured by coordination.py."""

    master_task: float            # master CPU per result handled (issuing included)
    master_eval: float = 0.0      # master CPU per evaluation in a result
    server_task: float = 0.0      # server / scheduler CPU per task
    worker_task: float = 0.0      # worker wall time per task beyond its simulations
    latency: float = 0.0          # one loopback round trip
    heartbeat: float = 0.0        # server CPU per worker heartbeat
    tick_base: float = 0.0        # Redis master's tick every 0.5 s: base CPU
    tick_per_worker: float = 0.0  # ... and per registered worker
    publish_per_worker: float = 0.0  # per generation: sending the work (Dask scatter)
    stretch: float = 1.0          # wall / CPU on this machine's load (master and server)


@dataclass(frozen=True)
class Policy:
    """A sampler's scheduling rules (defaults: the Redis sampler's)."""

    kind: str = "redis"           # "redis" or "dask"
    target_seconds: float = 0.05
    min_task_fraction: float = 0.1
    batch_size: int | None = None  # None: "auto"
    max_size: int = 100_000

    @staticmethod
    def redis(batch_size: int | None = None) -> Policy:
        return Policy("redis", 0.05, 0.1, batch_size)

    @staticmethod
    def dask(batch_size: int | None = None) -> Policy:
        return Policy("dask", 0.1, 0.5, batch_size)


@dataclass
class Workload:
    """Generations as (population n, simulations N needed), and the engine's own time."""

    generations: list[tuple[int, int]]
    sim_seconds: float
    startup: float = 0.0
    gaps: list[float] = field(default_factory=list)  # between generations
    tail: float = 0.0


@dataclass
class _Task:
    start: int
    stop: int
    gen: int
    cancelled: bool = False
    backup: bool = False
    twin: _Task | None = None

    @property
    def size(self) -> int:
        return self.stop - self.start


class _Scheduler:
    """DynamicScheduler's bookkeeping and task sizes (src/dabc/samplers/scheduling.py)."""

    def __init__(self, n: int, big_n: int, policy: Policy, hint: float | None):
        self.n, self.big_n, self.policy, self.hint = n, big_n, policy, hint
        self.next_id = self.issued = self.received = 0
        self.n_evaluated = self.n_accepted = 0
        self.seconds = 0.0
        self.prefix = 0
        self.done_ranges: dict[int, int] = {}
        self.cutoff: int | None = None

    def accepted(self, a: int, b: int) -> int:
        return (b * self.n) // self.big_n - (a * self.n) // self.big_n

    def per_eval(self) -> float | None:
        return self.seconds / self.n_evaluated if self.n_evaluated else self.hint

    def size(self, workers: int) -> int:
        p = self.policy
        if p.batch_size is not None:
            return p.batch_size
        per_eval = self.per_eval()
        if per_eval is None:
            return 1
        per_eval = max(per_eval, 1e-7)
        rate = (self.n_accepted + 1) / (self.n_evaluated + 2)
        expected = (self.n - self.n_accepted) / rate - (self.issued - self.received)
        size = min(expected / (2 * max(workers, 1)), p.target_seconds / per_eval)
        size = min(max(size, p.min_task_fraction * p.target_seconds / per_eval, 1), p.max_size)
        return max(1, int(math.ceil(size)))

    def next_task(self, workers: int, gen: int) -> _Task | None:
        if self.n_accepted >= self.n:
            return None
        size = self.size(workers)
        task = _Task(self.next_id, self.next_id + size, gen)
        self.next_id += size
        self.issued += size
        return task

    def wanted(self, task: _Task) -> bool:
        return self.cutoff is None or task.start <= self.cutoff

    def add(self, task: _Task, evaluated: int, seconds: float) -> bool:
        """Record a result; False for a duplicate or a cancelled task's partial result."""
        if task.start < self.prefix or task.start in self.done_ranges or evaluated < task.size:
            return False
        self.n_evaluated += evaluated
        self.seconds += seconds
        self.received += task.size
        self.done_ranges[task.start] = task.stop
        while self.prefix in self.done_ranges:
            self.prefix = self.done_ranges.pop(self.prefix)
        self.n_accepted += self.accepted(task.start, task.stop)
        if self.n_accepted >= self.n and self.cutoff is None:
            self.cutoff = self.big_n - 1
        return True

    @property
    def done(self) -> bool:
        return self.cutoff is not None and self.prefix > self.cutoff


def heartbeats_per_second(kind: str, workers: int) -> float:
    """Worker heartbeats the server handles per second: a Redis worker beats every second
    (HEARTBEAT_TTL / 3); Dask workers every ``distributed.scheduler.heartbeat_interval(W)``
    seconds (0.5 s up to 10 workers, 1 s below 50, 2 s below 200, then W / 200 + 1: no more
    than 200 a second)."""
    if kind == "redis":
        return float(workers)
    interval = (0.5 if workers <= 10 else 1.0 if workers < 50 else 2.0 if workers < 200
                else workers / 200 + 1)
    return workers / interval


class Simulation:
    """One analysis (all its generations) on W workers; :meth:`run` returns the figures."""

    def __init__(self, workers: int, costs: Costs, policy: Policy, workload: Workload):
        self.W, self.c, self.p, self.w = workers, costs, policy, workload
        s = costs.stretch
        self.m_task, self.m_eval = costs.master_task * s, costs.master_eval * s
        background = min(0.95, heartbeats_per_second(policy.kind, workers)
                         * costs.heartbeat * s)
        self.s_task = costs.server_task * s / (1 - background)
        self.tick = (costs.tick_base + costs.tick_per_worker * workers) * s
        self.dask = policy.kind == "dask"
        # one-way delays: Redis claims cost a round trip, delivery half of one; a Dask
        # task reaches its worker through the scheduler, its result comes back through the
        # scheduler and is then fetched by the client
        self.to_worker = costs.latency * s
        self.to_master = (2 if self.dask else 0.5) * costs.latency * s
        self.worker_task = costs.worker_task * s

    # -- event plumbing ------------------------------------------------------------------
    def _at(self, t: float, kind: str, payload=None) -> None:
        self._seq += 1
        heapq.heappush(self._events, (t, self._seq, kind, payload))

    def run(self) -> dict:
        self._events: list = []
        self._seq = 0
        self.idle = list(range(self.W))      # free workers
        self.running: dict[int, tuple[_Task, float]] = {}  # worker -> (task, its start)
        self.queue: deque[_Task] = deque()   # on the server, not yet claimed / assigned
        self.server_free = 0.0
        self.inbox: deque[tuple[_Task, int, float]] = deque()  # results at the master
        self.master_busy = 0.0
        self.master_busy_now = False
        self.server_busy = 0.0
        self.last_tick = 0.0
        self.tasks = self.evaluations = 0
        self.now = self.w.startup
        hint = None
        gen_seconds = []
        for g, (n, big_n) in enumerate(self.w.generations):
            t0 = self.now
            self.sched = _Scheduler(n, big_n, self.p, hint)
            self.gen = g
            self.in_flight: dict[int, _Task] = {}  # Dask futures not yet handled
            self.backed_up: set[int] = set()
            self.claimed = 0                        # running tasks of this generation
            self.arriving = 0                       # results on their way to the master
            self.drain_left = 0                     # results of the Redis master's current read
            self.now += self.c.publish_per_worker * self.W * self.c.stretch
            self._refill()
            self._loop()
            hint = self.sched.per_eval()
            gen_seconds.append(self.now - t0)
            self._end_generation()
            gap = self.w.gaps[g] if g < len(self.w.gaps) else 0.0
            if g < len(self.w.generations) - 1:
                self.now += gap
        wall = self.now + self.w.tail
        sims = sum(big_n for _, big_n in self.w.generations)
        useful = sims * self.w.sim_seconds
        return {"workers": self.W, "sim_seconds": self.w.sim_seconds, "sampler": self.p.kind,
                "batch_size": self.p.batch_size or "auto", "wall_s": wall,
                "efficiency": useful / self.W / wall,
                "efficiency_sampling": useful / self.W / sum(gen_seconds),
                "tasks": self.tasks, "evaluations_run": self.evaluations,
                "evaluations_per_task": self.evaluations / max(self.tasks, 1),
                "generation_s": [round(x, 3) for x in gen_seconds],
                "master_utilisation": self.master_busy / wall,
                "server_utilisation": self.server_busy / wall}

    # -- the master ----------------------------------------------------------------------
    def _refill(self) -> None:
        """Issue tasks up to 2 W in flight (the sampler's rule), then hand them out."""
        sched, limit = self.sched, 2 * self.W
        if self.dask:
            while len(self.in_flight) < limit:
                task = sched.next_task(self.W, self.gen)
                if task is None:
                    self._back_up()
                    break
                self._submit(task)
        else:
            in_flight = len(self.queue) + self.claimed + self.arriving + len(self.inbox)
            while in_flight < limit:
                task = sched.next_task(self.W, self.gen)
                if task is None:
                    break
                self._submit(task)
                in_flight += 1
        self._dispatch()

    def _submit(self, task: _Task) -> None:
        self.queue.append(task)
        if self.dask:
            self.in_flight[id(task)] = task

    def _back_up(self) -> None:
        for task in sorted(self.in_flight.values(), key=lambda t: t.start):
            if task.start not in self.backed_up and self.sched.wanted(task) and not task.backup:
                self.backed_up.add(task.start)
                copy = _Task(task.start, task.stop, task.gen, backup=True, twin=task)
                task.twin = copy
                self._submit(copy)

    def _cancel(self, task: _Task) -> None:
        task.cancelled = True
        self.in_flight.pop(id(task), None)

    def _dispatch(self) -> None:
        """Idle workers take queued tasks, each through the server (FIFO)."""
        while self.idle and self.queue:
            task = self.queue.popleft()
            if task.cancelled or task.gen != self.gen:
                continue
            worker = self.idle.pop()
            begin = max(self.now, self.server_free)
            self.server_free = begin + self.s_task
            self.server_busy += self.s_task
            start = self.server_free + self.to_worker
            self.running[worker] = (task, start)
            self.claimed += 1
            self._at(start + task.size * self.w.sim_seconds + self.worker_task, "finish",
                     worker)

    def _loop(self) -> None:
        """Events until the generation is done; the master handles one result at a time."""
        while not self.sched.done:
            if not self.master_busy_now and self.inbox:
                self._start_handling(*self.inbox.popleft())
            t, _, kind, payload = heapq.heappop(self._events)
            self.now = max(self.now, t)
            if kind == "finish":
                self._finish(payload)
            elif kind == "arrive":
                if payload[0].gen == self.gen:
                    self.arriving -= 1
                    self.inbox.append(payload)
            elif kind == "handled":
                self.master_busy_now = False
                self._handled(*payload)

    def _start_handling(self, task: _Task, evaluated: int, seconds: float) -> None:
        """The master takes one result from its inbox; its effects come at the end."""
        cost = self.m_task + evaluated * self.m_eval
        if self.dask and id(task) not in self.in_flight:
            cost = 0.0  # a cancelled future's result: skipped at no real cost
        tick = False
        if not self.dask and self.drain_left == 0:
            # this result and those waiting behind it (at most DRAIN of them per read)
            self.drain_left = 1 + min(len(self.inbox), 500)
        if not self.dask and self.now - self.last_tick > 0.5:
            cost += self.tick
            self.last_tick = self.now
            tick = True
        self.master_busy += cost
        self.master_busy_now = True
        self._at(self.now + cost, "handled", (task, evaluated, seconds, tick))

    def _handled(self, task: _Task, evaluated: int, seconds: float, tick: bool) -> None:
        if self.dask:
            if id(task) not in self.in_flight:
                return
            self.in_flight.pop(id(task), None)
            if task.twin is not None:
                self._cancel(task.twin)
        self.sched.add(task, evaluated, seconds)
        if self.sched.done:
            return
        if self.dask:
            for t in list(self.in_flight.values()):
                if not self.sched.wanted(t):
                    self._cancel(t)
        else:
            if tick:  # the tick also drops queued tasks that can no longer contribute
                self.queue = deque(t for t in self.queue if self.sched.wanted(t))
            self.drain_left -= 1
            if self.drain_left > 0:
                return  # the Redis master handles what was waiting when it looked, then refills
        self._refill()

    def _finish(self, worker: int) -> None:
        task, start = self.running.pop(worker)
        if task.gen == self.gen:
            self.claimed -= 1
        sim = self.w.sim_seconds
        evaluated = task.size
        if task.cancelled and self.dask and sim > 0:
            # a cancelled Dask task stops at its next evaluation (checked between them)
            evaluated = min(task.size, max(1, math.ceil((self.now - start) / sim)))
        self.tasks += 1
        self.evaluations += evaluated
        if not task.cancelled and task.gen == self.gen:
            self.arriving += 1
            self._at(self.now + self.to_master, "arrive", (task, evaluated, evaluated * sim))
        self.idle.append(worker)
        self._dispatch()

    def _end_generation(self) -> None:
        """The sampler returns: queued tasks and results are dropped; running tasks run to
        their end on Redis (it cannot cancel them), on Dask they stop after their current
        evaluation (the cancellation check between evaluations)."""
        self.queue.clear()
        self.inbox.clear()
        self.master_busy_now = False
        sim = self.w.sim_seconds
        early: dict[int, float] = {}
        for worker, (task, start) in self.running.items():
            task.cancelled = True
            if self.dask and sim > 0 and task.size > 1:
                evals = min(task.size, max(1, math.ceil((self.now - start) / sim)))
                early[worker] = max(self.now, start + evals * sim + self.worker_task)
        events = []
        for t, seq, kind, payload in self._events:
            if kind in ("arrive", "handled"):
                continue  # results of this generation: dropped with it
            if kind == "finish" and payload in early:
                t = min(t, early[payload])
            events.append((t, seq, kind, payload))
        heapq.heapify(events)
        self._events = events


def simulate(workers: int, costs: Costs, policy: Policy, workload: Workload) -> dict:
    """Run one simulation; see the module docstring."""
    return Simulation(workers, costs, policy, workload).run()


# --- calibration ----------------------------------------------------------------------------
def calibrate(capacity: dict, sampler: str, stretch: float | None = None) -> Costs:
    """Costs from coordination.py's ``capacity`` output, per CPU second (stretch 1 unless
    given: the capacity run's own load is divided out)."""
    c = capacity[sampler]
    b1 = c["batch_1"]
    own = b1.get("stretch_median") or 1.0  # the load during the capacity measurement
    eng = capacity["engine"]["cpu_per_evaluation_us"] * 1e-6
    evals_per_task = b1["evaluations"] / max(b1["tasks"], 1)
    master_task = max(b1["master_cpu_per_task_us"] * 1e-6 - evals_per_task * eng, 1e-6)
    rtt = c["round_trip_us"] * 1e-6 / own  # a round trip is mostly waiting for CPU
    # worker's own time per task: its CPU plus its round trips (Redis: claim loop and
    # delivery, 4 commands; Dask: the worker's messages are on its event loop, counted in
    # its CPU)
    worker_task = b1["workers_cpu_per_task_us"] * 1e-6 + (4 * rtt if sampler == "redis" else 0)
    # an idle worker's load on the server: Redis, a heartbeat a second and two idle polls
    # (the wake-up wait times out every 0.5 s), about a third each; Dask, the heartbeats
    # (every 0.5 s with the few workers of the capacity run), the scheduler's own idle
    # ticking counted in (an overestimate)
    idle = c["idle"]["server_cpu_per_worker_per_s_us"] * 1e-6
    heartbeat = idle / 3 if sampler == "redis" else idle / heartbeats_per_second(
        "dask", capacity["workers"])
    tick = c.get("tick_us") or {}
    if tick:
        a, b = tick["1000"] * 1e-6, tick["10000"] * 1e-6
        per_worker = max((b - a) / 9000, 0.0)
        tick_base = max(a - 1000 * per_worker, 0.0)
    else:
        per_worker = tick_base = 0.0
    return Costs(master_task=master_task, master_eval=eng,
                 server_task=b1["server_cpu_per_task_us"] * 1e-6,
                 worker_task=worker_task, latency=rtt,
                 heartbeat=heartbeat,
                 tick_base=tick_base, tick_per_worker=per_worker,
                 publish_per_worker=(c.get("scatter_per_worker_us") or 0.0) * 1e-6,
                 stretch=1.0 if stretch is None else stretch)


def reference_workload(real: dict, sim_seconds: float, scale: float = 1.0) -> Workload:
    """The real runs' workload (from their single-core reference run), optionally with the
    population scaled by ``scale`` (simulations per generation and engine time with it)."""
    ref = real["reference_single_core"]
    n = real["population"]
    gens = [(max(1, round(n * scale)), max(1, round(s * scale))) for s in ref["simulations"]]
    return Workload(gens, sim_seconds, startup=ref["startup_s"],
                    gaps=[g * scale for g in ref["gaps_s"]], tail=ref["tail_s"])


def steady_state_bound(workers: int, costs: Costs, policy: Policy, sim_seconds: float,
                       batch: int | None = None) -> dict:
    """The throughput ceiling without any generation's start or end: the tasks per second
    the master and the server can handle, against what W busy workers need. ``batch``:
    the evaluations per task (default: the auto size in mid-generation, target / t, at
    least 1). Efficiency can be no higher than ``bound``."""
    s = costs.stretch
    b = batch or policy.batch_size or max(1, math.ceil(policy.target_seconds / sim_seconds))
    tick_share = 0.0 if policy.kind == "dask" else min(
        0.99, (costs.tick_base + costs.tick_per_worker * workers) * s / 0.5)
    master = (1 - tick_share) / ((costs.master_task + b * costs.master_eval) * s)
    background = heartbeats_per_second(policy.kind, workers) * costs.heartbeat * s
    server = max(0.0, 1 - background) / (costs.server_task * s) if costs.server_task else math.inf
    need = workers / (b * sim_seconds + costs.worker_task * s)
    return {"workers": workers, "sim_seconds": sim_seconds, "sampler": policy.kind,
            "batch": b, "master_tasks_per_s": round(master, 1),
            "server_tasks_per_s": round(server, 1), "needed_tasks_per_s": round(need, 1),
            "tick_share_of_master": round(tick_share, 3),
            "heartbeat_share_of_server": round(min(background, 9.99), 3),
            "limit": "master" if master < min(server, need) else
                     "server" if server < need else "workers",
            "bound": round(min(1.0, min(master, server) / need) * (
                b * sim_seconds / (b * sim_seconds + costs.worker_task * s)), 4)}


def validate(capacity: dict, real: dict) -> dict:
    out = {}
    for name, policy in (("redis", Policy.redis()), ("dask", Policy.dask())):
        if name not in real or name not in capacity:
            continue
        run = real[name]
        costs = calibrate(capacity, name, stretch=run.get("stretch_median") or 1.0)
        wl = reference_workload(real, real["sleep_s"])
        pred = simulate(real["workers"], costs, policy, wl)
        out[name] = {"measured": run["efficiency"], "predicted": round(pred["efficiency"], 4),
                     "difference": round(pred["efficiency"] - run["efficiency"], 4),
                     "stretch": costs.stretch, "within_0.05": abs(
                         pred["efficiency"] - run["efficiency"]) <= 0.05,
                     "simulated": {k: (round(v, 4) if isinstance(v, float) else v)
                                   for k, v in pred.items()}}
    return out


def _row(case) -> dict:
    capacity, real, name, w, t, per_worker_population = case
    policy = Policy.redis() if name == "redis" else Policy.dask()
    scale = per_worker_population * w / real["population"]
    res = simulate(w, calibrate(capacity, name), policy, reference_workload(real, t, scale))
    row = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in res.items()}
    print(json.dumps(row), file=sys.stderr, flush=True)
    return row


def table(capacity: dict, real: dict, workers, sims, per_worker_population: int = 5,
          jobs: int = 1, skip=()) -> list:
    """Predicted efficiency on a dedicated master (stretch 1): population 5 W (so that every
    worker gets about as many tasks per generation as in the 100-worker runs), the real
    runs' acceptance rates, 4 generations, the engine's time scaled with the population."""
    cases = [(capacity, real, name, w, t, per_worker_population)
             for name in ("redis", "dask") for w in workers for t in sims
             if (name, w, t) not in skip]
    cases.sort(key=lambda c: -c[3] / max(c[4], 0.05))  # the longest first
    if jobs > 1:
        import multiprocessing as mp

        with mp.get_context("fork").Pool(jobs) as pool:
            rows = pool.map(_row, cases, chunksize=1)
    else:
        rows = [_row(c) for c in cases]
    return sorted(rows, key=lambda r: (r["sampler"], r["workers"], r["sim_seconds"]))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--capacity", default=str(RESULTS / "coordination_capacity.json"))
    ap.add_argument("--real", default=",".join(str(RESULTS / f"coordination_real_{k}.json")
                                               for k in ("redis", "dask")),
                    help="comma-separated outputs of coordination.py real (merged)")
    ap.add_argument("--workers", default="100,1000,10000")
    ap.add_argument("--sims", default="0.01,0.1,1,10")
    ap.add_argument("--jobs", type=int, default=1, help="simulations run in parallel")
    ap.add_argument("--skip-validation", action="store_true")
    ap.add_argument("--skip", default="", help="cases already done: sampler:W:t,...")
    ap.add_argument("--out", default=str(RESULTS / "scale_sim.json"))
    args = ap.parse_args(argv)
    capacity = json.loads(Path(args.capacity).read_text())
    real: dict = {}
    for path in args.real.split(","):
        if Path(path).exists():
            real.update(json.loads(Path(path).read_text()))
    out = {"calibration": {k: asdict(calibrate(capacity, k)) for k in ("redis", "dask")
                           if k in capacity},
           "validation": {} if args.skip_validation else validate(capacity, real),
           "table": table(capacity, real, [int(x) for x in args.workers.split(",")],
                          [float(x) for x in args.sims.split(",")], jobs=args.jobs,
                          skip={(k, int(w), float(t)) for k, w, t in
                                (x.split(":") for x in args.skip.split(",") if x)})}
    text = json.dumps(out, indent=2)
    RESULTS.mkdir(exist_ok=True)
    Path(args.out).write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["Costs", "Policy", "Simulation", "Workload", "calibrate", "replace", "simulate"]
