"""Every code block of README.md runs as copied (issue 15).

Each fenced ``python`` block is written to a file and run with this interpreter in a fresh
subprocess, as a user's script would be; each ``sh``/``bash``/``console`` block is run with
``bash -euo pipefail``. All blocks share one working folder and run in README order, so a
block may use what an earlier one wrote (``dabc resume results.db`` after the Quick start):
the README says so where it matters.

How a block says what it needs or why it is not run:

- a comment line ``# needs: redis`` inside the block: this test starts a password-protected
  ``redis-server`` on a free loopback port and one ``dabc redis-worker`` (the password in
  ``DABC_REDIS_PASSWORD``, never on a command line), and gives the block ``DABC_REDIS_URL``
  and ``DABC_REDIS_PASSWORD``;
- ``# needs: slurm`` / ``# needs: stan``: a real SLURM or a Stan compilation; these run in the
  slow suite (``pytest -m slow tests/test_readme.py``), as the other SLURM and Stan tests do;
- an HTML comment ``<!-- not run: reason -->`` on the line before the fence: a block that
  cannot run here (it installs dabc, starts a server that runs until stopped, or is a
  template with placeholders); the reason is required;
- a first line ``# name.py: ...``: a script that a later block runs by that name; it is
  saved under it in the shared folder (run or not).

A block that is neither runnable nor marked fails :func:`test_every_block_is_accounted_for`,
and :func:`test_a_broken_block_fails` shows that a block with an undefined name (the README's
old ``model_with_gq`` fragment) fails this harness.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from redis_server import RedisServer, Worker, wait_for

README = Path(__file__).resolve().parents[1] / "README.md"
FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```[ \t]*$", re.M | re.S)
NOT_RUN = re.compile(r"<!--\s*not run:\s*(.+?)\s*-->\s*$")
NEEDS = re.compile(r"^\s*#\s*needs:\s*([\w, ]+)", re.M)
SCRIPT_NAME = re.compile(r"\A#\s*([\w.-]+\.py):")
RUNNABLE = {"python", "sh", "bash", "console"}
SLOW_NEEDS = {"slurm", "stan"}
TIMEOUT = 600


@dataclass
class Block:
    """One fenced code block of the README."""

    index: int
    lang: str
    line: int
    code: str
    not_run: str | None
    needs: set[str] = field(default_factory=set)

    @property
    def id(self) -> str:
        return f"{self.lang or 'plain'}-line{self.line}"


def blocks(text: str) -> list[Block]:
    """The fenced code blocks of a Markdown text, with their markers."""
    found = []
    for i, m in enumerate(FENCE.finditer(text)):
        line = text.count("\n", 0, m.start()) + 1
        before = text[:m.start()].rstrip("\n").rsplit("\n", 1)[-1]
        reason = NOT_RUN.search(before)
        needs = {w.strip() for n in NEEDS.findall(m.group(2)) for w in n.split(",") if w.strip()}
        found.append(Block(i, m.group(1).lower(), line, m.group(2),
                           reason.group(1) if reason else None, needs))
    return found


def script_of(block: Block) -> str:
    """The text to run: a console block loses its ``$ `` prompts (and its output lines)."""
    if block.lang != "console":
        return block.code
    return "\n".join(line[2:] for line in block.code.splitlines() if line.startswith("$ "))


def run_block(block: Block, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    """Run one block in ``cwd`` in a fresh process, as a user would."""
    if block.lang == "python":
        path = cwd / f"readme_block_{block.line}.py"
        path.write_text(block.code)
        cmd = [sys.executable, path.name]
    else:
        cmd = ["bash", "-euo", "pipefail", "-c", script_of(block)]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=TIMEOUT, stdin=subprocess.DEVNULL)


def base_env() -> dict[str, str]:
    """The environment of a user's shell in a fresh folder: this interpreter's scripts on
    PATH, no display, at most 2 worker processes."""
    env = dict(os.environ, MPLBACKEND="Agg", PYTHONUNBUFFERED="1")
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    for name in ("DABC_REDIS_URL", "DABC_REDIS_PASSWORD", "REDISCLI_AUTH", "PYTHONPATH"):
        env.pop(name, None)
    return env


ALL = blocks(README.read_text())
RUN = [b for b in ALL if b.lang in RUNNABLE and b.not_run is None]


def test_every_block_is_accounted_for():
    """Every block is run by this file, or says why not; plain text blocks are not code."""
    unexplained = [b.id for b in ALL if b.lang not in RUNNABLE | {"text", "toml", "ini", ""}]
    assert not unexplained, f"blocks of an unknown language: {unexplained}"
    assert len(RUN) >= 10, f"only {len(RUN)} README blocks run"
    for b in ALL:
        if b.not_run is not None:
            assert len(b.not_run) > 10, f"README block {b.id}: give a real reason"


def test_a_broken_block_fails(tmp_path):
    """The harness catches a fragment with an undefined name: what the README used to show."""
    broken = Block(0, "python", 1, 'import dabc\nsim = stan_simulator(model_with_gq, data={})\n',
                   None)
    done = run_block(broken, tmp_path, base_env())
    assert done.returncode != 0
    assert "NameError: name 'stan_simulator' is not defined" in done.stderr


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """The one folder every block runs in, in README order, with the named scripts."""
    path = tmp_path_factory.mktemp("readme")
    for b in ALL:
        name = SCRIPT_NAME.match(b.code) if b.lang == "python" else None
        if name:
            (path / name.group(1)).write_text(b.code)
    return path


@pytest.fixture(scope="module")
def redis_env(tmp_path_factory):
    """A private Redis server and one worker; the variables a block's user would set."""
    server = RedisServer(tmp_path_factory.mktemp("readme-redis")).start()
    worker = Worker(server, processes=2, auth=False,
                    env={"DABC_REDIS_PASSWORD": server.password})
    try:
        wait_for(lambda: len(server.worker_ids()) >= 2, 60, 0.1, "2 redis workers")
        yield {"DABC_REDIS_URL": f"redis://{server.host}:{server.port}",
               "DABC_REDIS_PASSWORD": server.password,
               "DABC_REDIS_SECRET_FILE": str(server.secret_file)}
    finally:
        worker.proc.terminate()
        try:
            worker.proc.wait(30)
        except subprocess.TimeoutExpired:
            worker.proc.kill()
            worker.proc.wait()
        server.stop()


def _params():
    for b in RUN:
        marks = [pytest.mark.slow] if b.needs & SLOW_NEEDS else []
        yield pytest.param(b, id=b.id, marks=marks)


@pytest.mark.parametrize("block", list(_params()))
def test_readme_block_runs(block: Block, folder: Path, request):
    env = base_env()
    if "redis" in block.needs:
        env.update(request.getfixturevalue("redis_env"))
    done = run_block(block, folder, env)
    assert done.returncode == 0, (
        f"README.md block at line {block.line} failed (exit {done.returncode}):\n"
        f"{block.code}\n--- stderr (last 3000 characters) ---\n{done.stderr[-3000:]}\n"
        f"--- stdout (last 1000) ---\n{done.stdout[-1000:]}")
