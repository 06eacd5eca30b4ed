"""Redis samplers: a pool of workers, on any machines, serving many analyses at once.

Layout on the server (``P`` = ``dabc:a:<analysis id>``), every key with a TTL:

- ``dabc:analyses`` (zset) lists live analyses; ``P:alive`` expires when a master dies.
- ``P:gen`` names the current generation; ``P:work:<gen>`` holds its pickled work, signed,
  fetched once per worker per generation; ``P:info`` is the progress ``redis-manager
  info`` shows.
- ``P:queue:<gen>`` (list) holds tasks; a worker moves one atomically into ``P:claims:<gen>``
  (hash task -> worker). A result is pushed to ``P:results:<gen>`` only while its claim
  exists, so results of a finished generation never reappear.
- ``P:refused:<gen>`` (hash worker -> reason) names workers that refused the work (its
  signature did not verify with their secret).
- ``dabc:worker:<id>`` is a worker's heartbeat (short TTL; its value, JSON, holds the
  worker's start time and counts for ``redis-manager info``). The master re-queues the
  claims of workers whose heartbeat expired, so a killed worker never stalls a generation.
- The pub/sub channel ``dabc:wake`` (not a key) carries a message whenever tasks are queued
  on an empty queue; idle workers wait on it instead of polling.

Trust model
-----------
Work (pickled code, run by workers) and results (pickles, read by the master) are signed
with an HMAC-SHA256 keyed by a secret that the master and its workers share and the Redis
server never sees. The signature covers the analysis id, the generation and the payload
(and, for a result, its task), so a signed payload cannot be replayed into another analysis
or generation. A worker runs only work whose signature verifies and skips any other analysis
with a WARNING; the master unpickles only results whose signature verifies and drops any
other entry with a WARNING (its task is re-run). So anyone who can write to the Redis server
but does not know the secret can at most disturb scheduling (delete keys, queue bogus tasks,
stall a run until its bounds fire); they can never run code on a worker or on the master.
Whoever knows the secret can run code on every worker of the pool: give it only to whom you
would give a shell on them.

The secret comes, in this order, from ``secret_file=`` (``--secret-file``), the environment
variable ``DABC_REDIS_SECRET``, the file named by ``DABC_REDIS_SECRET_FILE``, or the default
file ``$XDG_CONFIG_HOME/dabc/redis-secret`` (``~/.config/dabc/redis-secret``), which is
created with a random secret (mode 0600) when missing; never from the command line. So one
user on one machine (or on machines sharing a home directory) needs no set-up; workers on
other machines need a copy of that file. A secret file readable by group or others is
refused.

The server's password (``requirepass``) comes, first found wins, from a password inside the
URL, ``password=`` (``--password``), ``password_file=`` (``--password-file``), or the
environment (``REDISCLI_AUTH``, then ``DABC_REDIS_PASSWORD``); messages name where it came
from (:func:`password_source`) and never show it (:func:`redact`). The server's URL comes
from ``url=`` (``--url``), else host and port, else ``DABC_REDIS_URL`` when neither host nor
port is given. A server without a password draws a warning; one that is not on the loopback
interface is refused unless ``insecure=True`` (``--insecure``).

Connection losses
-----------------
A master that loses its connection retries for ``reconnect_timeout`` seconds (default 30),
then raises :class:`dabc.WorkerError` (the stored generations stay intact: resume with
``ABCSMC.load``). Once connected again, and on every tick, it checks that its generation is
still on the server (its work and generation keys exist and the server's ``run_id`` is
unchanged); when not (a restarted server, evicted or deleted keys), it re-publishes the work
and every unfinished task with the same ids, so the results are the same. Workers retry for
their own ``reconnect_timeout`` (default 300 s) and keep serving when the server is back.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import logging
import os
import pickle
import secrets
import signal
import socket
import stat
import threading
import time
import traceback
import uuid
import warnings
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlparse

import cloudpickle

from ..errors import InputError, WorkerError
from .base import Sampler, SampleResult, Task, WorkRequest
from .scheduling import Scheduler, check_batch_size, make_scheduler
from .worker import check_timeout, execute

log = logging.getLogger("dabc.samplers.redis")

ANALYSES = "dabc:analyses"
WORKERS = "dabc:workers"
WAKE = "dabc:wake"        # pub/sub channel: new tasks were queued (wakes idle workers)
HEARTBEAT_TTL = 3.0       # seconds without a heartbeat before a worker counts as dead
KEY_TTL = 600             # keys of an analysis whose master died expire after this long
ALIVE_TTL = 30
DRAIN = 500               # results read in one round trip after the first of a wait
MAX_REPUBLISH = 20        # lost generations tolerated per generation before a WorkerError
SECRET_ENV, SECRET_FILE_ENV = "DABC_REDIS_SECRET", "DABC_REDIS_SECRET_FILE"
PASSWORD_ENVS = ("REDISCLI_AUTH", "DABC_REDIS_PASSWORD")
URL_ENV = "DABC_REDIS_URL"  # the sampler's default url= (set by batch mode)
MAGIC = b"dabc-hmac1:"    # signed values: MAGIC + 32-byte HMAC-SHA256 + body
_UNSIGNED = "it carries no dabc signature (not written by a dabc master or worker)"

# Move the first queued task into the claims hash (atomic); no key without a TTL.
_CLAIM = """
local task = redis.call('LPOP', KEYS[1])
if task then
  redis.call('HSET', KEYS[2], task, ARGV[1])
  redis.call('EXPIRE', KEYS[2], ARGV[2])
end
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
  redis.call('EXPIRE', KEYS[2], ARGV[3])
  return 1
end
return 0
"""


# --- secrets, signatures, passwords ------------------------------------------------------
def default_secret_file() -> Path:
    """``$XDG_CONFIG_HOME/dabc/redis-secret`` (default ``~/.config/dabc/redis-secret``)."""
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"),
                                                             ".config")
    return Path(base) / "dabc" / "redis-secret"


def _read_private_file(path: str | os.PathLike, what: str, env: str) -> str:
    """The stripped text of a file that only its owner may read."""
    path = Path(path).expanduser()
    try:
        mode = path.stat().st_mode
        text = path.read_text().strip()
    except OSError as exc:
        raise InputError(f"Cannot read the Redis {what} file {path}: {exc.strerror}. Create "
                         f"it (mode 0600) or point {env} at another file.") from exc
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise InputError(f"The Redis {what} file {path} is readable by group or others "
                         f"(mode {stat.S_IMODE(mode):04o}). Run `chmod 600 {path}`.")
    if not text:
        raise InputError(f"The Redis {what} file {path} is empty. Write the {what} into it.")
    return text


def load_secret(secret_file: str | os.PathLike | None = None, create: bool = True) -> bytes:
    """The HMAC secret shared by a master and its workers (see the module docstring).

    Parameters
    ----------
    secret_file : path, optional
        A file holding the secret (mode 0600). Default: ``DABC_REDIS_SECRET``, else the
        file named by ``DABC_REDIS_SECRET_FILE``, else the default file.
    create : bool, default True
        Create the default file with a random secret when it does not exist.

    Returns
    -------
    bytes
        The secret.

    Raises
    ------
    dabc.InputError
        When the secret file cannot be read, is readable by group or others, is empty, or
        the secret is shorter than 16 characters.
    """
    if secret_file is not None:
        text, where = _read_private_file(secret_file, "secret", "secret_file="), secret_file
    elif os.environ.get(SECRET_ENV):
        text, where = os.environ[SECRET_ENV], SECRET_ENV
    elif os.environ.get(SECRET_FILE_ENV):
        where = os.environ[SECRET_FILE_ENV]
        text = _read_private_file(where, "secret", SECRET_FILE_ENV)
    else:
        where = path = default_secret_file()
        if create and not path.exists():
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:  # another process made it just now
                pass
            else:
                with os.fdopen(fd, "w") as f:
                    f.write(secrets.token_hex(32) + "\n")
                log.warning("created a random Redis HMAC secret in %s; workers on other "
                            "machines need a copy of it (set %s to its path, or %s)",
                            path, SECRET_FILE_ENV, SECRET_ENV)
        text = _read_private_file(path, "secret", SECRET_FILE_ENV)
    if len(text) < 16:
        raise InputError(f"The Redis HMAC secret from {where} is {len(text)} characters "
                         "long; use at least 16 (e.g. `openssl rand -hex 32`).")
    return text.encode()


def _mac(secret: bytes, kind: str, analysis: str, gen: str, task: bytes, body: bytes) -> bytes:
    msg = hashlib.sha256()  # length-prefixed fields: no two field lists give one message
    for part in (kind.encode(), analysis.encode(), gen.encode(), task, body):
        msg.update(b"%d:" % len(part))
        msg.update(part)
    return hmac.new(secret, msg.digest(), hashlib.sha256).digest()


def _work_body(payload: bytes, simulation_timeout: float | None) -> bytes:
    """The signed body of a generation's work: a JSON header line, then the pickled work."""
    return json.dumps({"simulation_timeout": simulation_timeout}).encode() + b"\n" + payload


def _split_work_body(body: bytes) -> tuple[float | None, bytes]:
    header, payload = body.split(b"\n", 1)
    return json.loads(header)["simulation_timeout"], payload


def sign(secret: bytes, kind: str, analysis: str, gen: str, body: bytes,
         task: bytes = b"") -> bytes:
    """``body`` signed for one analysis, generation (and task): what is stored on Redis."""
    return MAGIC + _mac(secret, kind, analysis, gen, task, body) + body


def verify(secret: bytes, kind: str, analysis: str, gen: str, value: bytes,
           task: bytes = b"") -> tuple[bytes | None, str]:
    """``(body, "")`` when ``value`` is signed with ``secret`` for exactly this analysis,
    generation and task, else ``(None, reason)``; nothing is unpickled."""
    if not value.startswith(MAGIC) or len(value) < len(MAGIC) + 32:
        return None, _UNSIGNED
    mac, body = value[len(MAGIC):len(MAGIC) + 32], value[len(MAGIC) + 32:]
    if not hmac.compare_digest(mac, _mac(secret, kind, analysis, gen, task, body)):
        return None, ("its signature does not verify (another secret, or copied from another "
                      "analysis or generation); master and workers need the same secret, "
                      f"from {SECRET_ENV} or {SECRET_FILE_ENV}")
    return body, ""


def resolve_password(password: str | None = None,
                     password_file: str | os.PathLike | None = None) -> str | None:
    """The Redis password: ``password``, else ``password_file``, else ``REDISCLI_AUTH``,
    else ``DABC_REDIS_PASSWORD``, else None."""
    if password is not None:
        return password
    if password_file is not None:
        return _read_private_file(password_file, "password", "password_file=")
    for env in PASSWORD_ENVS:
        if os.environ.get(env):
            return os.environ[env]
    return None


def password_source(password: str | None = None,
                    password_file: str | os.PathLike | None = None,
                    url: str | None = None) -> str:
    """Where :func:`connect` takes the Redis password from, for messages (never the password).

    The order is that of :func:`resolve_password`; a password inside ``url`` wins over all
    of them (redis-py lets the URL's options override its keyword arguments).

    Parameters
    ----------
    password : str, optional
        A password given directly (``password=`` or ``--password``).
    password_file : path, optional
        A file holding the password.
    url : str, optional
        A ``redis://`` URL, which may hold a password itself.

    Returns
    -------
    str
        ``"the URL"``, ``"--password"``, ``"the file <path>"``, the name of the environment
        variable, or ``"none"``.

    Examples
    --------
    >>> password_source(password_file="~/redis-password")
    'the file ~/redis-password'
    """
    if url and urlparse(url).password:
        return "the URL"
    if password is not None:
        return "--password"
    if password_file is not None:
        return f"the file {password_file}"
    for env in PASSWORD_ENVS:
        if os.environ.get(env):
            return env
    return "none"


def redact(url: str | None) -> str | None:
    """``url`` with its password (if any) replaced by ``***``, for messages and logs.

    Parameters
    ----------
    url : str, optional
        A ``redis://``, ``rediss://`` or ``unix://`` URL.

    Returns
    -------
    str or None
        The URL without its password; None for None.

    Examples
    --------
    >>> redact("redis://:hunter2@db.example:6380/0")
    'redis://:***@db.example:6380/0'
    """
    if not url:
        return url
    parsed = urlparse(url)
    if not parsed.password:
        return url
    user = parsed.username or ""
    host = parsed.netloc.rpartition("@")[2]
    return parsed._replace(netloc=f"{user}:***@{host}").geturl()


def _is_loopback(host: str | None) -> bool:
    if not host or host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def connect(host: str = "localhost", port: int = 6379, password: str | None = None,
            url: str | None = None, insecure: bool = False,
            password_file: str | os.PathLike | None = None):
    """A checked redis-py client (see the module docstring for passwords).

    Raises
    ------
    dabc.InputError
        On a wrong or missing password, an unreachable server, or a server without a
        password that is not on loopback (unless ``insecure=True``).
    """
    import redis
    from redis.backoff import ExponentialWithJitterBackoff, NoBackoff
    from redis.retry import Retry

    source = password_source(password, password_file, url)
    password = resolve_password(password, password_file)
    where = redact(url) or f"{host}:{port}"
    parsed = urlparse(url) if url else None

    def make(**extra):
        if url:
            return redis.Redis.from_url(url, password=password, socket_connect_timeout=5,
                                        **extra)
        return redis.Redis(host=host, port=port, password=password, socket_connect_timeout=5,
                           **extra)

    how = ("Pass password= / --password, --password-file, or set REDISCLI_AUTH or "
           "DABC_REDIS_PASSWORD.")
    no_password = password is None and not (parsed and parsed.password)
    local = ((parsed.scheme == "unix" or _is_loopback(parsed.hostname)) if parsed
             else _is_loopback(host))
    if no_password and not local and not insecure:
        raise InputError(
            f"No password for Redis at {where}, which is not on loopback: a server without a "
            "password there lets anyone who can reach it disturb every analysis. Set "
            f"requirepass on the server and pass it ({how}), or pass insecure=True / "
            "--insecure to go on without one.")
    try:
        probe = make(retry=Retry(NoBackoff(), 0))  # fail at once on a wrong password
        probe.ping()
        probe.close()
        # a few quick retries for a blip; longer outages are the callers' to handle
        client = make(retry=Retry(ExponentialWithJitterBackoff(cap=0.5, base=0.01), 3))
    except redis.AuthenticationError as exc:
        if password is None:
            raise InputError(f"Redis at {where} needs a password ({exc}). {how}") from exc
        raise InputError(f"Redis at {where} refused the password from {source} ({exc}). "
                         f"Pass the server's requirepass: {how}") from exc
    except redis.ResponseError as exc:
        if "NOAUTH" in str(exc) or "AUTH" in str(exc).upper():
            raise InputError(f"Redis at {where} needs a password ({exc}). {how}") from exc
        raise
    except redis.ConnectionError as exc:
        raise InputError(f"Cannot reach Redis at {where}: {str(exc).rstrip('.')}. Start "
                         "redis-server or "
                         "check host, port and TLS settings.") from exc
    if no_password:  # and the server accepted us: it has none
        warnings.warn(f"Redis at {where} has no password: anyone who can connect to it can "
                      "disturb the analyses on it (never run code, without the HMAC secret). "
                      "Set requirepass on the server.", stacklevel=2)
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


def _result_entry(secret: bytes, analysis: str, gen: str, task: bytes, body: bytes) -> bytes:
    """A results-list entry: ``<task>\\n<signed pickle>`` (the task is readable unverified)."""
    return task + b"\n" + sign(secret, "result", analysis, gen, body, task)


def live_workers(r) -> list[str]:
    """Ids of workers whose heartbeat has not expired (and forget the dead ones)."""
    now = time.time()
    r.zremrangebyscore(WORKERS, "-inf", now - HEARTBEAT_TTL)
    return [w.decode() for w in r.zrangebyscore(WORKERS, now - HEARTBEAT_TTL, "+inf")]


def _redis_errors() -> tuple[type[BaseException], ...]:
    import redis

    return (redis.ConnectionError, redis.TimeoutError)


class RedisEvalParallelSampler(Sampler):
    """DYN on a Redis-coordinated worker pool (start workers with ``dabc redis-worker``).

    Several analyses can share one server and one pool. Workers that die are detected by
    their heartbeat and their tasks re-queued with the same ids. Work and results are
    signed with an HMAC secret shared with the workers (see the module docstring).

    Parameters
    ----------
    host, port : str, int
        The Redis server (default localhost:6379).
    password : str, optional
        The server's ``requirepass``; default from ``password_file`` or the environment
        (``REDISCLI_AUTH``, ``DABC_REDIS_PASSWORD``).
    url : str, optional
        A ``redis://`` or ``rediss://`` (TLS) URL instead of host and port. Default, when
        neither host nor port is given either: the environment variable ``DABC_REDIS_URL``
        (set by ``dabc cluster batch --backend redis`` for its script) if set.
    batch_size : int or "auto", default "auto"
        Evaluation ids per task (DYN); ``"auto"`` sizes tasks from measured times.
    no_worker_timeout : float, default 60
        Seconds with no live worker (or only workers that refuse this analysis' signature)
        before the generation fails with "no live workers".
    wait_for_workers : bool, default False
        Wait for workers instead of failing, with a warning every minute.
    target_seconds : float, default 0.05
        Aimed worker time per task.
    secret_file : path, optional
        File holding the HMAC secret (mode 0600); default ``DABC_REDIS_SECRET``,
        ``DABC_REDIS_SECRET_FILE`` or ``~/.config/dabc/redis-secret``.
    password_file : path, optional
        File holding the password (mode 0600).
    insecure : bool, default False
        Accept a server without a password that is not on loopback (with a warning).
    reconnect_timeout : float, default 30
        Seconds to retry a lost connection before raising ``dabc.WorkerError``.
    simulation_timeout : float, optional
        Seconds one simulation may run on a worker (sent, signed, with the work). A
        simulation over the limit is interrupted (``SIGALRM`` in the worker) and counts as a
        failed evaluation; see :class:`~dabc.MulticoreEvalParallelSampler`. Default None.

    Raises
    ------
    dabc.InputError
        From ``sample``, when the server cannot be reached, refuses the password, or has
        none and is not on loopback; or when the secret cannot be read.
    dabc.WorkerError
        From ``sample``, when no worker is alive for ``no_worker_timeout`` seconds, or the
        connection stays lost for ``reconnect_timeout`` seconds.

    Examples
    --------
    Workers started elsewhere with ``dabc redis-worker --host HOST``; the password from
    ``REDISCLI_AUTH``:

    >>> import dabc
    >>> sampler = dabc.RedisEvalParallelSampler(host="HOST", port=6379)  # doctest: +SKIP
    >>> abc = dabc.ABCSMC(model, prior, sampler=sampler)                  # doctest: +SKIP
    >>> history = abc.run(observed, db="sqlite:///results.db")            # doctest: +SKIP
    """

    dynamic = True

    def __init__(self, host: str = "localhost", port: int = 6379, password: str | None = None,
                 url: str | None = None, batch_size: int | str = "auto",
                 no_worker_timeout: float = 60.0, wait_for_workers: bool = False,
                 target_seconds: float = 0.05, secret_file: str | os.PathLike | None = None,
                 password_file: str | os.PathLike | None = None, insecure: bool = False,
                 reconnect_timeout: float = 30.0, simulation_timeout: float | None = None):
        self._fixed_size = check_batch_size(batch_size)
        self.simulation_timeout = check_timeout(simulation_timeout)
        if url is None and host == "localhost" and port == 6379:
            url = os.environ.get(URL_ENV) or None
        self.host, self.port, self.password, self.url = host, port, password, url
        self.batch_size = batch_size
        self.no_worker_timeout, self.wait_for_workers = no_worker_timeout, wait_for_workers
        self.target_seconds = target_seconds
        self.secret_file, self.password_file = secret_file, password_file
        self.insecure, self.reconnect_timeout = insecure, reconnect_timeout
        self.analysis_id = uuid.uuid4().hex[:16]
        self._r = None
        self._secret: bytes | None = None
        self._stop_requested = False
        self._timing = None

    @property
    def prefix(self) -> str:
        """The key prefix of this analysis on the server (``dabc:a:<analysis id>``)."""
        return f"dabc:a:{self.analysis_id}"

    @property
    def where(self) -> str:
        """The server, for messages (a URL's password replaced by ``***``)."""
        return redact(self.url) or f"{self.host}:{self.port}"

    def _client(self):
        if self._secret is None:
            self._secret = load_secret(self.secret_file)
        if self._r is None:
            self._r = connect(self.host, self.port, self.password, self.url, self.insecure,
                              self.password_file)
            self._claim = self._r.register_script(_CLAIM)
            self._release = self._r.register_script(_RELEASE)
        return self._r

    def start(self) -> None:
        """Connect to the server and read the secret, before a run is created.

        Raises
        ------
        dabc.InputError
            When the server cannot be reached or refuses the password, or the secret file
            is unusable.
        """
        self._client()

    def stop_requested(self) -> bool:
        """Whether ``dabc redis-manager stop`` asked this analysis to end."""
        return self._stop_requested

    def sample(self, request: WorkRequest) -> SampleResult:
        """Sample one generation on the worker pool (see the class docstring)."""
        r = self._client()
        sched = make_scheduler(request, self.dynamic, batch_size=self._fixed_size,
                               timing_hint=self._timing, target_seconds=self.target_seconds)
        gen = request.work.token.replace(":", "-")
        P = self.prefix
        keys = {k: f"{P}:{k}:{gen}" for k in ("work", "queue", "claims", "results", "refused")}
        self._gen, self._request = gen, request
        self._signed_work = sign(self._secret, "work", self.analysis_id, gen,
                                 _work_body(request.payload, self.simulation_timeout))
        self._outstanding: dict[str, Task] = {}   # queued or claimed, no result yet
        self._run_id = None
        self._republished = 0
        try:
            result = self._run(r, sched, keys, P)
            self._timing = sched.seconds_per_evaluation()
            return result
        finally:
            try:
                r.delete(*keys.values(), f"{P}:gen")
            except _redis_errors() as exc:
                log.warning("could not delete generation %s's keys on Redis at %s (%s); "
                            "they expire within %d s", gen, self.where, exc, KEY_TTL)

    def _publish(self, r, sched: Scheduler, keys, P, fresh: bool) -> None:
        """Put the generation on the server: its work and, after a loss, every unfinished
        task (claims and queue are rebuilt; tasks keep their ids)."""
        request = self._request
        pipe = r.pipeline()
        pipe.set(keys["work"], self._signed_work, ex=KEY_TTL)
        pipe.set(f"{P}:gen", self._gen, ex=KEY_TTL)
        pipe.set(f"{P}:alive", 1, ex=ALIVE_TTL)
        pipe.zadd(ANALYSES, {self.analysis_id: time.time()})
        pipe.expire(ANALYSES, KEY_TTL)
        pipe.hset(f"{P}:info", mapping={"generation": request.generation,
                                        "n": request.n, "accepted": sched.n_accepted,
                                        "evaluations": sched.n_evaluated,
                                        "failures": sched.n_failed, "started": time.time(),
                                        "master": f"{socket.gethostname()}-{os.getpid()}"})
        pipe.expire(f"{P}:info", KEY_TTL)
        requeue = []
        if not fresh:
            for enc, task in list(self._outstanding.items()):
                if sched.wanted(task):
                    requeue.append(enc)
                else:
                    del self._outstanding[enc]
            pipe.delete(keys["claims"], keys["queue"])
            if requeue:
                pipe.rpush(keys["queue"], *requeue)
                pipe.expire(keys["queue"], KEY_TTL)
                pipe.publish(WAKE, 1)
        pipe.info("server")
        self._run_id = pipe.execute()[-1].get("run_id")
        if not fresh:
            log.warning("Redis at %s lost generation %d of analysis %s (the server restarted "
                        "or its keys were deleted); re-published its work and %d unfinished "
                        "tasks with the same ids", self.where, request.generation,
                        self.analysis_id, len(requeue))

    def _lost(self, r, keys, P) -> bool:
        """Whether the server no longer holds this generation."""
        pipe = r.pipeline()
        pipe.exists(keys["work"], f"{P}:gen")
        pipe.info("server")
        present, info = pipe.execute()
        return present != 2 or info.get("run_id") != self._run_id

    def _run(self, r, sched: Scheduler, keys, P) -> SampleResult:
        last_tick, no_workers_since, last_warning = 0.0, None, 0.0
        workers = 1
        published = False
        lost_since = None
        while not sched.done:
            try:
                now = time.monotonic()
                if not published:
                    self._publish(r, sched, keys, P, fresh=True)
                    published = True
                if now - last_tick > 0.5:
                    last_tick = now
                    if self._lost(r, keys, P):
                        self._republished += 1
                        if self._republished > MAX_REPUBLISH:
                            raise WorkerError(
                                f"Redis at {self.where} lost generation "
                                f"{self._request.generation} of this analysis "
                                f"{self._republished} times: something deletes dabc keys "
                                "(redis-manager reset, FLUSHALL, maxmemory eviction, restarts)."
                                " Stop it, then resume the run with ABCSMC.load(...).")
                        self._publish(r, sched, keys, P, fresh=False)
                    workers = self._tick(r, sched, keys, P)
                    if workers == 0:
                        no_workers_since = no_workers_since or now
                        waited = now - no_workers_since
                        if not self.wait_for_workers and waited > self.no_worker_timeout:
                            raise WorkerError(self._no_workers_message(r, keys, waited))
                        if self.wait_for_workers and now - last_warning > 60:
                            last_warning = now
                            warnings.warn("no live Redis workers; waiting for workers to join",
                                          stacklevel=2)
                    else:
                        no_workers_since = None
                self._refill(r, sched, keys, max(workers, 1))
                got = r.blpop([keys["results"]], timeout=0.2)
                if lost_since is not None:
                    log.warning("reconnected to Redis at %s after %.1f s", self.where,
                                time.monotonic() - lost_since)
                    lost_since = None
                if got is not None:
                    self._receive(r, sched, keys, got[1])
                    # and every result waiting behind it, in one round trip, before the next
                    # refill sizes and issues tasks
                    while not sched.done:
                        pipe = r.pipeline()
                        pipe.lrange(keys["results"], 0, DRAIN - 1)
                        pipe.ltrim(keys["results"], DRAIN, -1)
                        more = pipe.execute()[0]
                        for raw in more:
                            if sched.done:
                                break  # the rest belongs to no population (as if unread)
                            self._receive(r, sched, keys, raw)
                        if len(more) < DRAIN:
                            break
            except _redis_errors() as exc:
                now = time.monotonic()
                if lost_since is None:
                    lost_since = now
                    log.warning("lost the connection to Redis at %s (%s); retrying for up to "
                                "%g s", self.where, exc, self.reconnect_timeout)
                elif now - lost_since > self.reconnect_timeout:
                    raise WorkerError(
                        f"lost the connection to Redis at {self.where} for "
                        f"{now - lost_since:.0f} s (reconnect_timeout="
                        f"{self.reconnect_timeout:g}) in generation "
                        f"{self._request.generation}: {str(exc).rstrip('.')}. The generations "
                        "stored so far are "
                        "intact: restart the server and resume the run with "
                        "ABCSMC.load(...).") from exc
                last_tick = 0.0  # check the generation at once when connected again
                time.sleep(0.5)
        return sched.result()

    def _no_workers_message(self, r, keys, waited: float) -> str:
        refused = {k.decode(): v.decode() for k, v in r.hgetall(keys["refused"]).items()}
        if refused:
            return (f"no live workers on Redis {self.where} accept this analysis' work for "
                    f"{waited:.0f} s: {len(refused)} refused it ({next(iter(refused.values()))})."
                    f" Give workers and master the same secret ({SECRET_ENV} or "
                    f"{SECRET_FILE_ENV}).")
        return (f"no live workers on Redis {self.where} for {waited:.0f} s. Start workers with "
                "`dabc redis-worker`, or pass wait_for_workers=True to wait for them.")

    def _receive(self, r, sched: Scheduler, keys, raw: bytes) -> None:
        """Verify one results-list entry; only then unpickle and record it."""
        task_text, sep, signed = raw.partition(b"\n")
        body, reason = verify(self._secret, "result", self.analysis_id, self._gen, signed,
                              task_text) if sep else (None, _UNSIGNED)
        if body is None:
            log.warning("refused a result entry of analysis %s generation %s on Redis at %s: "
                        "%s; not unpickled, its task counts as not delivered",
                        self.analysis_id, self._gen, self.where, reason)
            task = self._outstanding.get(task_text.decode(errors="replace"))
            if task is not None and sched.wanted(task) and not r.hexists(keys["claims"],
                                                                         task_text):
                pipe = r.pipeline()  # re-run it, with the same ids
                pipe.rpush(keys["queue"], task_text)
                pipe.expire(keys["queue"], KEY_TTL)
                pipe.execute()
            return
        task, batch = pickle.loads(body)
        if isinstance(batch, str):
            raise WorkerError(f"a Redis worker failed outside the model:\n{batch}")
        self._outstanding.pop(_encode(task), None)
        sched.add(task, batch)

    def _refill(self, r, sched: Scheduler, keys, workers: int) -> None:
        pipe = r.pipeline(transaction=False)
        pipe.llen(keys["queue"])
        pipe.hlen(keys["claims"])
        pipe.llen(keys["results"])
        queued, claimed, waiting = pipe.execute()
        # results not yet read are still in flight for this count: without them the master
        # issued tasks past the generation's end (3,090 simulations run for 2,543 used, with
        # 100 workers of 1 s simulations)
        in_flight = queued + claimed + waiting
        target = 2 * workers
        tasks = []
        while in_flight + len(tasks) < target:
            task = sched.next_task(workers)
            if task is None:
                break
            enc = _encode(task)
            self._outstanding[enc] = task
            tasks.append(enc)
        if tasks:
            pipe = r.pipeline()
            pipe.rpush(keys["queue"], *tasks)
            pipe.expire(keys["queue"], KEY_TTL)
            if queued == 0:  # the queue was empty: some workers may be waiting for tasks
                pipe.publish(WAKE, 1)
            pipe.execute()

    def _tick(self, r, sched: Scheduler, keys, P) -> int:
        """Re-queue claims of dead workers, refresh TTLs, publish progress, read the stop
        flag. Returns the number of live workers that do not refuse this analysis."""
        alive = set(live_workers(r))
        for task, wid in r.hgetall(keys["claims"]).items():
            if wid.decode() not in alive and self._release(
                    keys=[keys["claims"], keys["queue"]], args=[task, wid, KEY_TTL]):
                log.warning("Redis worker %s stopped sending heartbeats; re-queued its task %s",
                            wid.decode(), task.decode())
        # drop queued tasks that can no longer contribute
        for task in r.lrange(keys["queue"], 0, -1):
            if not sched.wanted(_decode(task)):
                r.lrem(keys["queue"], 0, task)
                self._outstanding.pop(task.decode(), None)
        pipe = r.pipeline()
        for k in keys.values():
            pipe.expire(k, KEY_TTL)
        pipe.expire(f"{P}:gen", KEY_TTL)
        pipe.set(f"{P}:alive", 1, ex=ALIVE_TTL)
        pipe.zadd(ANALYSES, {self.analysis_id: time.time()})
        pipe.expire(ANALYSES, KEY_TTL)
        pipe.hset(f"{P}:info", mapping={"accepted": sched.n_accepted,
                                        "evaluations": sched.n_evaluated,
                                        "failures": sched.n_failed})
        pipe.expire(f"{P}:info", KEY_TTL)
        pipe.hkeys(keys["refused"])
        pipe.get(f"{P}:stop")
        *_, refused, stop = pipe.execute()
        self._stop_requested = stop is not None
        return len(alive - {w.decode() for w in refused})

    def close(self) -> None:
        """End the analysis: delete all its keys (the sampler can be used again)."""
        if self._r is not None:
            P = self.prefix
            try:
                leftovers = list(self._r.scan_iter(match=f"{P}:*"))
                if leftovers:
                    self._r.delete(*leftovers)
                self._r.zrem(ANALYSES, self.analysis_id)
            except _redis_errors() as exc:
                log.warning("could not delete analysis %s's keys on Redis at %s (%s); they "
                            "expire within %d s", self.analysis_id, self.where, exc, KEY_TTL)
            self._r.close()
            self._r = None


class RedisStaticSampler(RedisEvalParallelSampler):
    """STAT on a Redis worker pool: particle slots are handed out as tasks.

    Parameters
    ----------
    host, port, password, url, batch_size, no_worker_timeout, wait_for_workers, target_seconds
        As for :class:`RedisEvalParallelSampler` (``batch_size`` and ``target_seconds`` do
        not apply to STAT).
    secret_file, password_file, insecure, reconnect_timeout, simulation_timeout
        As for :class:`RedisEvalParallelSampler`.

    Examples
    --------
    >>> import dabc
    >>> sampler = dabc.RedisStaticSampler(host="HOST", port=6379)  # doctest: +SKIP
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


def work_loop(host: str = "localhost", port: int = 6379, password: str | None = None,
              url: str | None = None, runtime: float | None = None, idle_sleep: float = 0.5,
              install_signals: bool = True, secret_file: str | os.PathLike | None = None,
              password_file: str | os.PathLike | None = None, insecure: bool = False,
              reconnect_timeout: float = 300.0, stats: dict | None = None) -> dict:
    """Serve every analysis on the server until ``runtime`` seconds pass or SIGTERM/SIGINT.

    An idle worker waits up to ``idle_sleep`` seconds for a master's wake-up message (sent
    when tasks are queued), so it starts at once without polling the server.
    On a signal the unfinished claim is handed back to its queue before exiting.
    Only work signed with this worker's secret is run (see the module docstring); other
    analyses are skipped with a WARNING. A lost connection is retried for
    ``reconnect_timeout`` seconds.

    Parameters
    ----------
    host, port, password, url, password_file, insecure
        The server, as for :func:`connect`.
    runtime : float, optional
        Seconds to serve (default: until a signal).
    idle_sleep : float, default 0.5
        Longest wait for a wake-up message when idle.
    install_signals : bool, default True
        Handle SIGTERM/SIGINT (only in a process's main thread).
    secret_file : path, optional
        The HMAC secret's file (see :func:`load_secret`).
    reconnect_timeout : float, default 300
        Seconds without a connection before giving up.
    stats : dict, optional
        A dict to keep the counts in (updated as the worker goes), so that a caller has them
        even when this function raises; by default a new one.

    Returns
    -------
    dict
        Counts of what this worker did: ``worker``, ``tasks``, ``evaluations``, ``refused``,
        and ``stopped``, why it stopped: ``"runtime"`` (``runtime`` passed), the signal's
        name (``"SIGTERM"``, ``"SIGINT"``) or, when it raises, ``"error"``. While it runs, its
        heartbeat key on the server holds the counts and its start time (``redis-manager
        info`` shows them).

    Raises
    ------
    dabc.InputError
        When the server cannot be reached at the start, or the secret cannot be read.
    dabc.WorkerError
        When the connection stays lost for ``reconnect_timeout`` seconds.
    """
    import redis

    secret = load_secret(secret_file)
    where = redact(url) or f"{host}:{port}"
    r = connect(host, port, password, url, insecure, password_file)
    wake = None
    claim, deliver = r.register_script(_CLAIM), r.register_script(_DELIVER)
    release = r.register_script(_RELEASE)
    wid = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    stats = {} if stats is None else stats
    stats.update(worker=wid, tasks=0, evaluations=0, refused=0)
    started = time.time()
    stopping = threading.Event()

    def on_signal(signum, frame):
        if stopping.is_set():
            return  # already stopping: let the clean-up finish
        stopping.set()
        # SIGUSR1 is the relay of a SIGTERM/SIGINT another thread received
        stats.setdefault("stopped", "SIGTERM" if signum == signal.SIGUSR1
                         else signal.Signals(signum).name)
        raise _Stop()

    if install_signals:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1):
            signal.signal(sig, on_signal)
        _relay_signals_to_main_thread()

    def heartbeat():
        pipe = r.pipeline()
        pipe.zadd(WORKERS, {wid: time.time()})
        pipe.expire(WORKERS, int(HEARTBEAT_TTL) + 1)  # gone soon after the last worker
        pipe.set(f"dabc:worker:{wid}", json.dumps(
            {"started": started, "tasks": stats["tasks"], "evaluations": stats["evaluations"],
             "refused": stats["refused"]}), ex=int(HEARTBEAT_TTL) + 1)
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
    refused: set[tuple[str, str]] = set()  # (analysis, generation) whose work did not verify
    current = None
    lost_since = None
    try:
        while not stopping.is_set() and (deadline is None or time.monotonic() < deadline):
            try:
                if wake is None:
                    wake = r.pubsub(ignore_subscribe_messages=True)
                    wake.subscribe(WAKE)
                current = None
                for aid_raw in r.zrange(ANALYSES, 0, -1):
                    aid = aid_raw.decode(errors="replace")
                    P = f"dabc:a:{aid}"
                    gen = r.get(f"{P}:gen")
                    if gen is None:
                        continue
                    gen = gen.decode(errors="replace")
                    if (aid, gen) in refused:
                        continue
                    queue, claims = f"{P}:queue:{gen}", f"{P}:claims:{gen}"
                    task = claim(keys=[queue, claims], args=[wid, KEY_TTL])
                    if task is None:
                        continue
                    current = (queue, claims, task)
                    loaded = cache.get((aid, gen))  # (work, simulation_timeout)
                    if loaded is None:
                        payload = r.get(f"{P}:work:{gen}")
                        if payload is None:
                            break  # the generation just ended
                        body, reason = verify(secret, "work", aid, gen, payload)
                        if body is None:
                            release(keys=[claims, queue], args=[task, wid, KEY_TTL])
                            current = None
                            if len(refused) > 1000:
                                refused.clear()
                            refused.add((aid, gen))
                            stats["refused"] += 1
                            pipe = r.pipeline()
                            pipe.hset(f"{P}:refused:{gen}", wid, reason)
                            pipe.expire(f"{P}:refused:{gen}", KEY_TTL)
                            pipe.execute()
                            log.warning("refused the work of analysis %s (generation %s) on "
                                        "Redis at %s: %s; skipping that analysis", aid, gen,
                                        where, reason)
                            continue
                        cache.clear()
                        timeout, body = _split_work_body(body)
                        loaded = cache[(aid, gen)] = (cloudpickle.loads(body), timeout)
                    work, timeout = loaded
                    decoded = _decode(task)
                    try:
                        batch = execute(work, decoded, timeout=timeout)
                    except _Stop:
                        raise
                    except Exception:
                        batch = traceback.format_exc()
                    entry = _result_entry(secret, aid, gen, task,
                                          pickle.dumps((decoded, batch)))
                    deliver(keys=[claims, f"{P}:results:{gen}"], args=[task, entry, KEY_TTL])
                    current = None
                    stats["tasks"] += 1
                    stats["evaluations"] += 0 if isinstance(batch, str) else len(batch)
                    break
                else:
                    wake.get_message(timeout=idle_sleep)
                    while wake.get_message() is not None:  # one wake-up serves them all
                        pass
                if lost_since is not None:
                    log.warning("reconnected to Redis at %s after %.1f s", where,
                                time.monotonic() - lost_since)
                    lost_since = None
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                current = None  # the master re-queues what this worker held
                if wake is not None:
                    try:
                        wake.close()
                    except Exception:
                        pass
                    wake = None
                now = time.monotonic()
                if lost_since is None:
                    lost_since = now
                    log.warning("lost the connection to Redis at %s (%s); retrying for up to "
                                "%g s", where, exc, reconnect_timeout)
                elif now - lost_since > reconnect_timeout:
                    raise WorkerError(
                        f"lost the connection to Redis at {where} for {now - lost_since:.0f} s "
                        f"(reconnect_timeout={reconnect_timeout:g}): {str(exc).rstrip('.')}. "
                        "Restart the server,"
                        " then start the worker again.") from exc
                stopping.wait(0.5)
        stats.setdefault("stopped", "runtime")
    except _Stop:
        pass
    except BaseException:
        stats.setdefault("stopped", "error")
        raise
    finally:
        stopping.set()
        try:
            if wake is not None:
                wake.close()
            r.close()  # a signal may have interrupted a command half-way: use a fresh one
            r = connect(host, port, password, url, insecure, password_file)
            if current is not None:
                queue, claims, task = current
                r.register_script(_RELEASE)(keys=[claims, queue], args=[task, wid, KEY_TTL])
            r.zrem(WORKERS, wid)
            r.delete(f"dabc:worker:{wid}")
            r.close()
        except (InputError, redis.ConnectionError, redis.TimeoutError) as exc:
            log.warning("could not unregister worker %s from Redis at %s (%s); its keys "
                        "expire within %d s", wid, where, exc, int(HEARTBEAT_TTL) + 1)
    return stats


def _iso(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds")


def _number(raw: bytes | None) -> int | float | None:
    if raw is None:
        return None
    text = raw.decode()
    try:
        return int(text)
    except ValueError:
        return float(text)


def _status(r) -> dict:
    """What :func:`status` returns, from an open client (drops analyses whose master died)."""
    now = time.time()
    out: dict = {"time": _iso(now), "workers": [], "analyses": []}
    busy: dict[str, str] = {}  # worker -> analysis it holds a claim of
    for aid_raw in r.zrange(ANALYSES, 0, -1):
        aid = aid_raw.decode(errors="replace")
        P = f"dabc:a:{aid}"
        if not r.exists(f"{P}:alive"):
            r.zrem(ANALYSES, aid_raw)  # its master died; its keys expire by TTL
            continue
        pipe = r.pipeline()
        pipe.hgetall(f"{P}:info")
        pipe.get(f"{P}:gen")
        pipe.exists(f"{P}:stop")
        info, gen, stop = pipe.execute()
        info = {k.decode(): v for k, v in info.items()}
        queued = claimed = results = refused = 0
        if gen is not None:
            gen = gen.decode(errors="replace")
            pipe = r.pipeline()
            pipe.llen(f"{P}:queue:{gen}")
            pipe.hgetall(f"{P}:claims:{gen}")
            pipe.llen(f"{P}:results:{gen}")
            pipe.hlen(f"{P}:refused:{gen}")
            queued, claims, results, refused = pipe.execute()
            claimed = len(claims)
            for wid in claims.values():
                busy[wid.decode(errors="replace")] = aid
        started = _number(info.get("started"))
        out["analyses"].append({
            "analysis": aid,
            "master": info["master"].decode(errors="replace") if "master" in info else None,
            "generation": _number(info.get("generation")),
            "n": _number(info.get("n")),
            "accepted": _number(info.get("accepted")),
            "evaluations": _number(info.get("evaluations")),
            "failures": _number(info.get("failures")),
            "generation_started": _iso(started),
            "generation_seconds": None if started is None else round(now - started, 1),
            "queued": queued, "claimed": claimed, "results": results, "refused": refused,
            "stop_requested": bool(stop)})
    r.zremrangebyscore(WORKERS, "-inf", now - HEARTBEAT_TTL)
    seen = r.zrangebyscore(WORKERS, now - HEARTBEAT_TTL, "+inf", withscores=True)
    beats = r.mget([f"dabc:worker:{w.decode()}" for w, _ in seen]) if seen else []
    for (wid_raw, last), beat in zip(seen, beats, strict=True):
        wid = wid_raw.decode(errors="replace")
        host, _, rest = wid.rpartition("-")[0].rpartition("-")
        try:
            extra = json.loads(beat) if beat else {}
        except ValueError:  # a worker of an older dabc: "1"
            extra = {}
        extra = extra if isinstance(extra, dict) else {}
        out["workers"].append({
            "worker": wid, "host": host, "pid": int(rest) if rest.isdigit() else None,
            "state": "busy" if wid in busy else "idle", "analysis": busy.get(wid),
            "tasks": extra.get("tasks"), "evaluations": extra.get("evaluations"),
            "refused": extra.get("refused"), "started": _iso(extra.get("started")),
            "last_seen": _iso(last), "last_seen_seconds": round(max(now - last, 0.0), 1)})
    return out


def status(host: str = "localhost", port: int = 6379, password: str | None = None,
           url: str | None = None, insecure: bool = False,
           password_file: str | os.PathLike | None = None) -> dict:
    """The worker pool and the analyses on a Redis server, as ``redis-manager info`` shows them.

    Parameters
    ----------
    host, port, password, url, insecure, password_file
        The server, as for :func:`connect`.

    Returns
    -------
    dict
        JSON-ready: ``server`` (no password in it), ``time`` (ISO 8601, UTC), ``workers``
        (one dict per live worker process: ``worker``, ``host``, ``pid``, ``state``
        ``"busy"`` or ``"idle"``, ``analysis`` it works for, ``tasks``, ``evaluations``,
        ``refused``, ``started``, ``last_seen`` and ``last_seen_seconds``) and ``analyses``
        (one dict per live analysis: ``analysis``, ``master``, ``generation``, ``n``,
        ``accepted``, ``evaluations``, ``failures``, ``generation_started``,
        ``generation_seconds``, the lengths ``queued``, ``claimed``, ``results`` and
        ``refused`` of its generation's queue, claims, results and refusals, and
        ``stop_requested``). Numbers are numbers; times are ISO strings.

    Raises
    ------
    dabc.InputError
        When the server cannot be reached or refuses the password.

    Examples
    --------
    >>> status("127.0.0.1", 6379)["workers"]  # doctest: +SKIP
    [{'worker': 'node1-4242-1a2b3c', 'host': 'node1', 'pid': 4242, 'state': 'idle', ...}]
    """
    r = connect(host, port, password, url, insecure, password_file)
    try:
        return {"server": redact(url) or f"{host}:{port}", **_status(r)}
    finally:
        r.close()


def manager(command: str, host: str = "localhost", port: int = 6379,
            password: str | None = None, url: str | None = None, insecure: bool = False,
            password_file: str | os.PathLike | None = None) -> list[dict]:
    """Inspect or stop the analyses on a Redis server (``dabc redis-manager``).

    Parameters
    ----------
    command : {"info", "stop", "reset"}
        ``info``: one dict per analysis; ``stop``: end all analyses after their current
        generation; ``reset``: delete every dabc key (emergencies only).
    host, port, password, url, insecure, password_file
        The server, as for :func:`connect`.

    Returns
    -------
    list of dict
        ``info`` and ``stop``: per live analysis ``analysis``, ``generation``, ``n``,
        ``accepted``, ``evaluations``, ``failures``, ``started`` (epoch seconds) and
        ``live_workers``; with no analysis, ``info`` gives one row with ``analysis`` None.
        ``reset``: one row ``{"deleted_keys": n}``. See :func:`status` for more detail.

    Raises
    ------
    dabc.InputError
        When the server cannot be reached or refuses the password.

    Examples
    --------
    >>> manager("stop", "127.0.0.1", 6379)  # doctest: +SKIP
    [{'analysis': '3f2a9c1b2d3e4f5a', 'generation': 4, ...}]
    """
    r = connect(host, port, password, url, insecure, password_file)
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
            info = {k.decode(): v for k, v in r.hgetall(f"{P}:info").items()}
            out.append({"analysis": aid.decode(),
                        **{k: (v.decode(errors="replace") if k == "master" else _number(v))
                           for k, v in info.items()}})
        workers = live_workers(r)
        for item in out:
            item["live_workers"] = len(workers)
        if command == "info" and not out:
            out.append({"analysis": None, "live_workers": len(workers)})
        return out
    finally:
        r.close()
