"""Redis samplers: a pool of workers, on any machines, serving many analyses at once.

Layout on the server (``P`` = ``dabc:a:<analysis id>``), every key with a TTL:

- ``dabc:analyses`` (zset) lists live analyses; ``P:alive`` expires when a master dies.
- ``P:gen`` names the current generation; ``P:work:<gen>`` holds its pickled work, fetched
  once per worker per generation.
- ``P:queue:<gen>`` (list) holds tasks; a worker moves one atomically into ``P:claims:<gen>``
  (hash task -> worker). A result is pushed to ``P:results:<gen>`` only while its claim
  exists, so results of a finished generation never reappear.
- ``dabc:worker:<id>`` is a worker's heartbeat (short TTL). The master re-queues the claims
  of workers whose heartbeat expired, so a killed worker never stalls a generation.
- The pub/sub channel ``dabc:wake`` (not a key) carries a message whenever tasks are queued
  on an empty queue; idle workers wait on it instead of polling.
"""

from __future__ import annotations

import logging
import os
import pickle
import signal
import socket
import threading
import time
import traceback
import uuid
import warnings

import cloudpickle

from ..errors import InputError, WorkerError
from .base import Sampler, SampleResult, Task, WorkRequest
from .scheduling import Scheduler, check_batch_size, make_scheduler
from .worker import execute

log = logging.getLogger("dabc.samplers.redis")

ANALYSES = "dabc:analyses"
WORKERS = "dabc:workers"
WAKE = "dabc:wake"        # pub/sub channel: new tasks were queued (wakes idle workers)
HEARTBEAT_TTL = 3.0       # seconds without a heartbeat before a worker counts as dead
KEY_TTL = 600             # keys of an analysis whose master died expire after this long
ALIVE_TTL = 30

# Move the first queued task into the claims hash (atomic).
_CLAIM = """
local task = redis.call('LPOP', KEYS[1])
if task then redis.call('HSET', KEYS[2], task, ARGV[1]) end
return task
"""
# Deliver a result only while the claim exists (the generation is still running).
_DELIVER = """
if redis.call('HDEL', KEYS[1], ARGV[1]) == 1 then
  redis.call('RPUSH', KEYS[2], ARGV[2])
  redis.call('EXPIRE', KEYS[2], ARGV[3])
  return 1
end
return 0
"""
# Give a claim back to the queue if it still belongs to the given worker.
_RELEASE = """
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then
  redis.call('HDEL', KEYS[1], ARGV[1])
  redis.call('LPUSH', KEYS[2], ARGV[1])
  return 1
end
return 0
"""


def connect(host: str = "localhost", port: int = 6379, password: str | None = None,
            url: str | None = None):
    """A checked redis-py client; a wrong password or an unreachable server is an InputError."""
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    where = url or f"{host}:{port}"

    def make(**extra):
        if url:
            return redis.Redis.from_url(url, password=password, socket_connect_timeout=5,
                                        **extra)
        return redis.Redis(host=host, port=port, password=password, socket_connect_timeout=5,
                           **extra)

    try:
        probe = make(retry=Retry(NoBackoff(), 0))  # fail at once on a wrong password
        probe.ping()
        probe.close()
        client = make()
    except redis.AuthenticationError as exc:
        if password is None:
            raise InputError(f"Redis at {where} needs a password ({exc}). Pass password= / "
                             "--password.") from exc
        raise InputError(f"Redis at {where} refused the password ({exc}). Pass the server's "
                         "requirepass as password= / --password.") from exc
    except redis.ResponseError as exc:
        if "NOAUTH" in str(exc) or "AUTH" in str(exc).upper():
            raise InputError(f"Redis at {where} needs a password ({exc}). Pass password= / "
                             "--password.") from exc
        raise
    except redis.ConnectionError as exc:
        raise InputError(f"Cannot reach Redis at {where}: {exc}. Start redis-server or "
                         "check host, port and TLS settings.") from exc
    return client


def _encode(task: Task) -> str:
    """``ids:start:stop`` or ``slots:start:stop:max_attempts`` (the queue's entries)."""
    if task.kind == "ids":
        return f"ids:{task.start}:{task.stop}"
    return f"slots:{task.start}:{task.stop}:{task.max_attempts}"


def _decode(text: bytes | str) -> Task:
    kind, start, stop, *attempts = (text.decode() if isinstance(text, bytes) else text).split(":")
    max_attempts = None if not attempts or attempts[0] == "None" else int(attempts[0])
    return Task(kind, int(start), int(stop), max_attempts)


def live_workers(r) -> list[str]:
    """Ids of workers whose heartbeat has not expired (and forget the dead ones)."""
    now = time.time()
    r.zremrangebyscore(WORKERS, "-inf", now - HEARTBEAT_TTL)
    return [w.decode() for w in r.zrangebyscore(WORKERS, now - HEARTBEAT_TTL, "+inf")]


class RedisEvalParallelSampler(Sampler):
    """DYN on a Redis-coordinated worker pool (start workers with ``dabc redis-worker``).

    Several analyses can share one server and one pool. Workers that die are detected by
    their heartbeat and their tasks re-queued with the same ids.

    Parameters
    ----------
    host, port : str, int
        The Redis server (default localhost:6379).
    password : str, optional
        The server's ``requirepass``.
    url : str, optional
        A ``redis://`` or ``rediss://`` (TLS) URL instead of host and port.
    batch_size : int or "auto", default "auto"
        Evaluation ids per task (DYN); ``"auto"`` sizes tasks from measured times.
    no_worker_timeout : float, default 60
        Seconds with no live worker before the generation fails with "no live workers".
    wait_for_workers : bool, default False
        Wait for workers instead of failing, with a warning every minute.
    target_seconds : float, default 0.05
        Aimed worker time per task.

    Raises
    ------
    dabc.InputError
        From ``sample``, when the server cannot be reached or refuses the password.
    dabc.WorkerError
        From ``sample``, when no worker is alive for ``no_worker_timeout`` seconds.
    """

    dynamic = True

    def __init__(self, host: str = "localhost", port: int = 6379, password: str | None = None,
                 url: str | None = None, batch_size: int | str = "auto",
                 no_worker_timeout: float = 60.0, wait_for_workers: bool = False,
                 target_seconds: float = 0.05):
        self._fixed_size = check_batch_size(batch_size)
        self.host, self.port, self.password, self.url = host, port, password, url
        self.batch_size = batch_size
        self.no_worker_timeout, self.wait_for_workers = no_worker_timeout, wait_for_workers
        self.target_seconds = target_seconds
        self.analysis_id = uuid.uuid4().hex[:16]
        self._r = None
        self._stop_requested = False
        self._timing = None

    @property
    def prefix(self) -> str:
        return f"dabc:a:{self.analysis_id}"

    def _client(self):
        if self._r is None:
            self._r = connect(self.host, self.port, self.password, self.url)
            self._claim = self._r.register_script(_CLAIM)
            self._release = self._r.register_script(_RELEASE)
        return self._r

    def stop_requested(self) -> bool:
        """Whether ``dabc redis-manager stop`` asked this analysis to end."""
        return self._stop_requested

    def sample(self, request: WorkRequest) -> SampleResult:
        r = self._client()
        sched = make_scheduler(request, self.dynamic, batch_size=self._fixed_size,
                               timing_hint=self._timing, target_seconds=self.target_seconds)
        gen = request.work.token.replace(":", "-")
        P = self.prefix
        keys = {k: f"{P}:{k}:{gen}" for k in ("work", "queue", "claims", "results")}
        pipe = r.pipeline()
        pipe.set(keys["work"], request.payload, ex=KEY_TTL)
        pipe.set(f"{P}:gen", gen, ex=KEY_TTL)
        pipe.set(f"{P}:alive", 1, ex=ALIVE_TTL)
        pipe.zadd(ANALYSES, {self.analysis_id: time.time()})
        pipe.expire(ANALYSES, KEY_TTL)
        pipe.hset(f"{P}:info", mapping={"generation": request.generation,
                                        "n": request.n, "accepted": 0, "evaluations": 0,
                                        "failures": 0, "started": time.time()})
        pipe.expire(f"{P}:info", KEY_TTL)
        pipe.execute()
        try:
            result = self._run(r, sched, keys, P)
            self._timing = sched.seconds_per_evaluation()
            return result
        finally:
            r.delete(*keys.values(), f"{P}:gen")

    def _run(self, r, sched: Scheduler, keys, P) -> SampleResult:
        last_tick, no_workers_since, last_warning = 0.0, None, 0.0
        workers = 1
        while not sched.done:
            now = time.monotonic()
            if now - last_tick > 0.5:
                last_tick = now
                workers = len(live_workers(r))
                self._tick(r, sched, keys, P)
                if workers == 0:
                    no_workers_since = no_workers_since or now
                    waited = now - no_workers_since
                    if not self.wait_for_workers and waited > self.no_worker_timeout:
                        raise WorkerError(
                            f"no live workers on Redis {self.url or f'{self.host}:{self.port}'}"
                            f" for {waited:.0f} s. Start workers with `dabc redis-worker`, or "
                            "pass wait_for_workers=True to wait for them.")
                    if self.wait_for_workers and now - last_warning > 60:
                        last_warning = now
                        warnings.warn("no live Redis workers; waiting for workers to join",
                                      stacklevel=2)
                else:
                    no_workers_since = None
            self._refill(r, sched, keys, max(workers, 1))
            got = r.blpop([keys["results"]], timeout=0.2)
            if got is None:
                continue
            _, raw = got
            task, batch = pickle.loads(raw)
            if isinstance(batch, str):
                raise WorkerError(f"a Redis worker failed outside the model:\n{batch}")
            sched.add(task, batch)
        return sched.result()

    def _refill(self, r, sched: Scheduler, keys, workers: int) -> None:
        queued = r.llen(keys["queue"])
        in_flight = queued + r.hlen(keys["claims"])
        target = 2 * workers
        tasks = []
        while in_flight + len(tasks) < target:
            task = sched.next_task(workers)
            if task is None:
                break
            tasks.append(_encode(task))
        if tasks:
            pipe = r.pipeline()
            pipe.rpush(keys["queue"], *tasks)
            pipe.expire(keys["queue"], KEY_TTL)
            if queued == 0:  # the queue was empty: some workers may be waiting for tasks
                pipe.publish(WAKE, 1)
            pipe.execute()

    def _tick(self, r, sched: Scheduler, keys, P) -> None:
        """Re-queue claims of dead workers, refresh TTLs, publish progress, read stop flag."""
        alive = set(live_workers(r))
        for task, wid in r.hgetall(keys["claims"]).items():
            if wid.decode() not in alive and self._release(
                    keys=[keys["claims"], keys["queue"]], args=[task, wid]):
                log.warning("Redis worker %s stopped sending heartbeats; re-queued its task %s",
                            wid.decode(), task.decode())
        # drop queued tasks that can no longer contribute
        for task in r.lrange(keys["queue"], 0, -1):
            if not sched.wanted(_decode(task)):
                r.lrem(keys["queue"], 0, task)
        pipe = r.pipeline()
        for k in keys.values():
            pipe.expire(k, KEY_TTL)
        pipe.set(f"{P}:alive", 1, ex=ALIVE_TTL)
        pipe.zadd(ANALYSES, {self.analysis_id: time.time()})
        pipe.expire(ANALYSES, KEY_TTL)
        pipe.hset(f"{P}:info", mapping={"accepted": sched.n_accepted,
                                        "evaluations": sched.n_evaluated,
                                        "failures": sched.n_failed})
        pipe.get(f"{P}:stop")
        self._stop_requested = pipe.execute()[-1] is not None

    def close(self) -> None:
        """End the analysis: delete all its keys (the sampler can be used again)."""
        if self._r is not None:
            P = self.prefix
            leftovers = list(self._r.scan_iter(match=f"{P}:*"))
            if leftovers:
                self._r.delete(*leftovers)
            self._r.zrem(ANALYSES, self.analysis_id)
            self._r.close()
            self._r = None


class RedisStaticSampler(RedisEvalParallelSampler):
    """STAT on a Redis worker pool: particle slots are handed out as tasks.

    Parameters
    ----------
    host, port, password, url, batch_size, no_worker_timeout, wait_for_workers, target_seconds
        As for :class:`RedisEvalParallelSampler` (``batch_size`` and ``target_seconds`` do
        not apply to STAT).
    """

    dynamic = False


# --- workers ---------------------------------------------------------------------------
class _Stop(BaseException):
    """Raised in a worker by SIGTERM/SIGINT to abandon the current task."""


def _relay_signals_to_main_thread() -> None:
    """Make SIGTERM/SIGINT interrupt the main thread even when another thread receives it.

    Python runs handlers only in the main thread, and only when it next executes bytecode;
    a model blocked in a long C call would keep its claim. The C-level handler writes the
    signal number to a wakeup pipe at once, whichever thread it lands on; a relay thread
    then sends SIGUSR1 to the main thread, whose blocking call returns with EINTR.
    """
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)
    signal.set_wakeup_fd(write_fd)
    main_id = threading.main_thread().ident
    wanted = {int(signal.SIGTERM), int(signal.SIGINT)}

    def relay():
        while True:
            data = os.read(read_fd, 64)
            if not data:
                return
            if wanted.intersection(data):
                signal.pthread_kill(main_id, signal.SIGUSR1)

    threading.Thread(target=relay, daemon=True, name="dabc-signal-relay").start()


def work_loop(host="localhost", port=6379, password=None, url=None, runtime: float | None = None,
              idle_sleep: float = 0.5, install_signals: bool = True) -> dict:
    """Serve every analysis on the server until ``runtime`` seconds pass or SIGTERM/SIGINT.

    An idle worker waits up to ``idle_sleep`` seconds for a master's wake-up message (sent
    when tasks are queued), so it starts at once without polling the server.
    On a signal the unfinished claim is handed back to its queue before exiting.
    Returns counts of what this worker did.
    """
    r = connect(host, port, password, url)
    wake = r.pubsub(ignore_subscribe_messages=True)
    wake.subscribe(WAKE)
    claim, deliver = r.register_script(_CLAIM), r.register_script(_DELIVER)
    wid = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    stats = {"worker": wid, "tasks": 0, "evaluations": 0}
    stopping = threading.Event()

    def on_signal(signum, frame):
        if stopping.is_set():
            return  # already stopping: let the clean-up finish
        stopping.set()
        raise _Stop()

    if install_signals:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1):
            signal.signal(sig, on_signal)
        _relay_signals_to_main_thread()

    def heartbeat():
        pipe = r.pipeline()
        pipe.zadd(WORKERS, {wid: time.time()})
        pipe.expire(WORKERS, int(HEARTBEAT_TTL) + 1)  # gone soon after the last worker
        pipe.set(f"dabc:worker:{wid}", "1", ex=int(HEARTBEAT_TTL) + 1)
        pipe.execute()

    def beat():
        while not stopping.wait(HEARTBEAT_TTL / 3):
            try:
                heartbeat()
            except Exception:  # the server went away; the main loop will notice
                pass

    heartbeat()
    threading.Thread(target=beat, daemon=True).start()
    deadline = None if runtime is None else time.monotonic() + runtime
    cache: dict = {}
    current = None
    try:
        while not stopping.is_set() and (deadline is None or time.monotonic() < deadline):
            current = None
            for aid in r.zrange(ANALYSES, 0, -1):
                P = f"dabc:a:{aid.decode()}"
                gen = r.get(f"{P}:gen")
                if gen is None:
                    continue
                gen = gen.decode()
                queue, claims = f"{P}:queue:{gen}", f"{P}:claims:{gen}"
                task = claim(keys=[queue, claims], args=[wid])
                if task is None:
                    continue
                current = (queue, claims, task)
                work = cache.get(gen)
                if work is None:
                    payload = r.get(f"{P}:work:{gen}")
                    if payload is None:
                        break  # the generation just ended
                    cache.clear()
                    work = cache[gen] = cloudpickle.loads(payload)
                decoded = _decode(task)
                try:
                    batch = execute(work, decoded)
                except _Stop:
                    raise
                except Exception:
                    batch = traceback.format_exc()
                deliver(keys=[claims, f"{P}:results:{gen}"],
                        args=[task, pickle.dumps((decoded, batch)), KEY_TTL])
                current = None
                stats["tasks"] += 1
                stats["evaluations"] += 0 if isinstance(batch, str) else len(batch)
                break
            else:
                wake.get_message(timeout=idle_sleep)
                while wake.get_message() is not None:  # one wake-up serves them all
                    pass
    except _Stop:
        pass
    finally:
        stopping.set()
        wake.close()
        r.close()  # a signal may have interrupted a command half-way: use a fresh connection
        r = connect(host, port, password, url)
        if current is not None:
            queue, claims, task = current
            r.register_script(_RELEASE)(keys=[claims, queue], args=[task, wid])
        r.zrem(WORKERS, wid)
        r.delete(f"dabc:worker:{wid}")
        r.close()
    return stats


def manager(command: str, host="localhost", port=6379, password=None, url=None) -> list[dict]:
    """``info``: one dict per analysis; ``stop``: end all analyses after this generation;
    ``reset``: delete every dabc key (emergencies only)."""
    r = connect(host, port, password, url)
    try:
        if command == "reset":
            keys = list(r.scan_iter(match="dabc:*"))
            if keys:
                r.delete(*keys)
            return [{"deleted_keys": len(keys)}]
        out = []
        for aid in r.zrange(ANALYSES, 0, -1):
            P = f"dabc:a:{aid.decode()}"
            if not r.exists(f"{P}:alive"):
                r.zrem(ANALYSES, aid)  # its master died; its keys expire by TTL
                continue
            if command == "stop":
                r.set(f"{P}:stop", 1, ex=KEY_TTL)
            info = {k.decode(): v.decode() for k, v in r.hgetall(f"{P}:info").items()}
            out.append({"analysis": aid.decode(), **info})
        workers = live_workers(r)
        for item in out:
            item["live_workers"] = len(workers)
        if command == "info" and not out:
            out.append({"analysis": None, "live_workers": len(workers)})
        return out
    finally:
        r.close()
