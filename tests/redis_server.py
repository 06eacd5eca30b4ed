"""A private ``redis-server`` and real ``dabc redis-worker`` subprocesses, for test_redis.py.

The server listens on 127.0.0.1 only, on a free port, with a password (``password=None``:
none) and no persistence (``appendonly=True``: AOF with ``appendfsync always``); it runs in
the foreground as our child, so it is stopped (or SIGKILLed, and restarted on the same
port) by its PID. Each server has an HMAC secret file (mode 0600) that the workers get
through ``DABC_REDIS_SECRET_FILE`` and the masters through ``secret_file=``. Workers are started
through the CLI (``python -m dabc.cli.redis_cli redis-worker``) and likewise only ever
signalled by the PIDs we started. Nothing here touches any other Redis server or process.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import redis

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
CLI = [sys.executable, "-m", "dabc.cli.redis_cli"]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout: float, interval: float = 0.02, what: str = "condition"):
    """Poll ``predicate`` until it returns something truthy; AssertionError after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


class RedisServer:
    """``redis-server`` on 127.0.0.1:<free port> with ``requirepass``, as a child process."""

    def __init__(self, workdir: Path, password: str | None = "s3cret-dabc-test",
                 appendonly: bool = False):
        self.workdir = Path(workdir)
        self.password = password
        self.appendonly = appendonly
        self.host = "127.0.0.1"
        self.port: int | None = None
        self.proc: subprocess.Popen | None = None
        self.log = self.workdir / "redis-server.log"
        self.secret_file = self.workdir / "hmac-secret"

    def _launch(self) -> bool:
        log = open(self.log, "ab")
        auth = ["--requirepass", self.password] if self.password is not None else []
        persist = (["--appendonly", "yes", "--appendfsync", "always"] if self.appendonly
                   else ["--appendonly", "no"])
        self.proc = subprocess.Popen(
            [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", *auth,
             "--save", "", *persist, "--daemonize", "no", "--protected-mode", "yes",
             "--dir", str(self.workdir), "--logfile", ""],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        log.close()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and self.proc.poll() is None:
            try:
                with self.client() as c:
                    c.ping()
                return True
            except redis.ConnectionError:
                time.sleep(0.02)
        self._reap()
        return False

    def start(self) -> RedisServer:
        self.workdir.mkdir(parents=True, exist_ok=True)
        if not self.secret_file.exists():
            fd = os.open(self.secret_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(os.urandom(24).hex() + "\n")
        for _attempt in range(5):  # another process may grab the free port before us
            self.port = free_port()
            if self._launch():
                return self
        raise RuntimeError(f"redis-server did not start; log:\n{self.log.read_text()}")

    def kill(self) -> None:
        """SIGKILL the server (by our PID) and reap it; the port is kept for restart()."""
        assert self.proc is not None and self.proc.poll() is None
        self.proc.kill()
        self.proc.wait()

    def restart(self, timeout: float = 20) -> RedisServer:
        """Start the server again on the same port (after kill()); with AOF on, it loads
        what it had written."""
        deadline = time.monotonic() + timeout
        while not self._launch():  # the port may linger for a moment
            if time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not restart on port {self.port}; log:\n"
                                   f"{self.log.read_text()}")
            time.sleep(0.2)
        return self

    def run_id(self) -> str:
        with self.client() as c:
            return c.info("server")["run_id"]

    def client(self) -> redis.Redis:
        """A plain redis-py client (no retries, so a test never waits on backoff)."""
        return redis.Redis(host=self.host, port=self.port, password=self.password,
                           socket_connect_timeout=2, retry=None)

    def dbsize(self) -> int:
        with self.client() as c:
            return c.dbsize()

    def keys(self) -> list[str]:
        with self.client() as c:
            return sorted(k.decode() for k in c.keys("*"))

    def wait_empty(self, timeout: float = 10.0) -> None:
        """Assert that the server holds no key within ``timeout`` (heartbeats expire in 4 s)."""
        deadline = time.monotonic() + timeout
        while self.dbsize() and time.monotonic() < deadline:
            time.sleep(0.05)
        left = self.keys()
        assert self.dbsize() == 0, f"keys left on the server after {timeout} s: {left}"

    def worker_ids(self) -> list[str]:
        """Ids in the workers' registry (``dabc:workers``), dead or alive."""
        with self.client() as c:
            return [w.decode() for w in c.zrange("dabc:workers", 0, -1)]

    def cli(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        """Run ``python -m dabc.cli.redis_cli <args> --host --port --password``."""
        auth = ["--password", self.password] if self.password is not None else []
        return subprocess.run([*CLI, *args, "--host", self.host, "--port", str(self.port),
                               *auth], capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL)

    def _reap(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def stop(self) -> None:
        self._reap()
        self.proc = None


class Worker:
    """One ``redis-worker`` subprocess (``--processes n``), started by us, known by PID.

    ``auth=False``: no ``--password`` on its command line (it must come from ``env``)."""

    def __init__(self, server: RedisServer, processes: int = 1, env: dict | None = None,
                 password: str | None = None, log_dir: Path | None = None,
                 args: tuple[str, ...] = (), auth: bool = True):
        self.server = server
        self.processes = processes
        log_dir = Path(log_dir or server.workdir)
        self.stderr_path = log_dir / f"worker-{time.monotonic_ns()}.err"
        # unbuffered output, as under Docker or systemd: the exit line must still be whole
        full_env = dict(os.environ, PYTHONUNBUFFERED="1",
                        DABC_REDIS_SECRET_FILE=str(server.secret_file))
        full_env.pop("DABC_REDIS_SECRET", None)
        full_env.update(env or {})
        password = password or server.password
        auth = ["--password", password] if password is not None and auth else []
        with open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(
                [*CLI, "redis-worker", "--host", server.host, "--port", str(server.port),
                 *auth, "--processes", str(processes), *args],
                stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL, env=full_env,
                text=True)
        self.pid = self.proc.pid
        self.stdout: str | None = None

    def ids(self) -> list[str]:
        """This worker's registered ids (only for ``processes=1``, where our PID works)."""
        return [w for w in self.server.worker_ids() if f"-{self.pid}-" in w]

    def registered(self) -> bool:
        """Whether this (single-process) worker is in the registry."""
        assert self.processes == 1, "with --processes > 1 count server.worker_ids() instead"
        return bool(self.ids())

    def alive(self) -> bool:
        return self.proc.poll() is None

    def signal(self, signum: int) -> None:
        if self.alive():
            os.kill(self.pid, signum)

    def wait(self, timeout: float = 20) -> int:
        """Wait for exit; returns the exit code and keeps stdout."""
        out, _ = self.proc.communicate(timeout=timeout)
        self.stdout = (self.stdout or "") + (out or "")
        return self.proc.returncode

    def stop(self, timeout: float = 20) -> int:
        """SIGTERM and wait for a clean exit; returns the exit code."""
        self.signal(signal.SIGTERM)
        return self.wait(timeout)

    def stats(self) -> list[dict]:
        """The JSON lines the worker printed on exit: one object per line and process."""
        assert self.stdout is not None, "worker has not exited"
        out = []
        for line in self.stdout.splitlines():
            if not line.strip():
                continue
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                raise AssertionError("a worker's output is not one JSON object per line: "
                                     f"{self.stdout!r}") from None
        return out

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def reap(self) -> None:
        """Make sure the process is gone (SIGTERM, then SIGKILL), by our PID only."""
        if self.proc.poll() is None:
            try:
                self.stop(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.communicate()
