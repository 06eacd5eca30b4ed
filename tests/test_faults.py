"""The fault suite of issue 16: every case that once hung, lost work or ran a stranger's
code."""


# --- cases 1, 7, 8: distance values, duplicated parameters, epsilon schedules ---
# A distance must return a finite number >= 0, or inf ("never accept"). NaN, None, a negative
# number or a non-number once hung the run (NaN epsilon, nothing accepted again) or ended it
# after one generation with a negative epsilon; now the first such value raises InputError,
# also when a worker process computed it. Each run below ends well under a second.
import re as _re  # noqa: E402
import time as _time  # noqa: E402

import numpy as _np  # noqa: E402
import pytest as _pytest  # noqa: E402

import dabc as _dabc  # noqa: E402

_PRIOR_1 = _dabc.Prior(x=_dabc.RV("norm", 0, 1))
_RULE_1 = (r"a distance must return a finite number >= 0 \(inf is allowed for 'never "
           r"accept'\)")


def _gauss_1(p, rng):
    return {"y": p["x"] + 0.3 * rng.standard_normal()}


def nan_for_half(x, x0):
    return float("nan") if x["y"] > 0 else abs(x["y"] - x0["y"])


def nan_for_all(x, x0):
    return float("nan")


def returns_none(x, x0):
    return None


def negative_distance(x, x0):
    return -abs(x["y"] - x0["y"])


def returns_a_string(x, x0):
    return "far"


class NanDistance(_dabc.Distance):
    """A Distance subclass whose batch gives NaN for every other simulation."""

    def batch(self, stats, observed):
        d = _np.abs(stats[:, 0] - observed[0])
        d[::2] = _np.nan
        return d


def _run_1(distance, tmp_path, sampler, *, epsilon=None, gens=4, n=50):
    abc = _dabc.ABCSMC(_gauss_1, _PRIOR_1, population_size=n, seed=1, progress=False,
                       sampler=sampler, distance=distance, epsilon=epsilon)
    return abc.run({"y": 0.5}, db=f"sqlite:///{tmp_path / 'faults.db'}", max_generations=gens)


_SAMPLERS_1 = {"single": lambda: _dabc.SingleCoreSampler(),
               "multicore": lambda: _dabc.MulticoreEvalParallelSampler(2)}
_BAD_DISTANCES = [
    (nan_for_half, r"distance 'nan_for_half' returned nan"),
    (nan_for_all, r"distance 'nan_for_all' returned nan"),
    (returns_none, r"distance 'returns_none' returned None"),
    (negative_distance, r"distance 'negative_distance' returned -\d"),
    (returns_a_string, r"distance 'returns_a_string' returned 'far'"),
]


@_pytest.mark.timeout(30)
@_pytest.mark.parametrize("sampler", sorted(_SAMPLERS_1))
@_pytest.mark.parametrize(("distance", "message"), _BAD_DISTANCES,
                          ids=[d.__name__ for d, _ in _BAD_DISTANCES])
def test_case1_bad_distance_value_is_an_input_error(tmp_path, sampler, distance, message):
    t0 = _time.monotonic()
    with _pytest.raises(_dabc.InputError) as info:
        _run_1(distance, tmp_path, _SAMPLERS_1[sampler]())
    text = str(info.value)
    assert _time.monotonic() - t0 < 20
    assert _re.search(message, text), text
    # one offending input: the simulated statistics, the observed ones, and the rule
    assert "for simulated statistics {'y': " in text
    assert "(observed {'y': 0.5})" in text
    assert _re.search(_RULE_1, text), text


@_pytest.mark.timeout(30)
@_pytest.mark.parametrize("sampler", sorted(_SAMPLERS_1))
def test_case1_distance_class_returning_nan_is_named(tmp_path, sampler):
    with _pytest.raises(_dabc.InputError, match=r"distance 'NanDistance' returned nan for "
                                                r"simulated statistics \{'y': .*\(observed "
                                                r"\{'y': 0\.5\}\); a distance must "
                                                r"return a finite number >= 0"):
        _run_1(NanDistance(), tmp_path, _SAMPLERS_1[sampler]())


def far_for_positive(x, x0):
    return float("inf") if x["y"] > 1.5 else abs(x["y"] - x0["y"])


@_pytest.mark.timeout(60)
def test_case1_infinite_distance_means_never_accept(tmp_path):
    h = _run_1(far_for_positive, tmp_path, _dabc.SingleCoreSampler(), gens=3)
    pops = h.get_all_populations()
    assert pops.t.tolist() == [0, 1, 2]
    eps = pops.epsilon.tolist()
    assert eps[0] == float("inf") and all(_np.isfinite(eps[1:]))  # from finite distances only
    for t in (1, 2):
        d = h.get_weighted_distances(t).distance.to_numpy()
        assert _np.all(_np.isfinite(d)) and _np.all(d <= eps[t])


def always_far(x, x0):
    return float("inf")


@_pytest.mark.timeout(30)
def test_case1_no_finite_distance_is_a_clear_error(tmp_path):
    with _pytest.raises(_dabc.InputError, match=r"MedianEpsilon: every one of the 50 accepted "
                                                r"particles of generation 0 has an infinite"):
        _run_1(always_far, tmp_path, _dabc.SingleCoreSampler())


class _NanSchedule(_dabc.Epsilon):
    def next(self, t, distances, weights):
        return float("nan")


@_pytest.mark.timeout(30)
def test_case1_schedule_giving_nan_is_an_input_error(tmp_path):
    with _pytest.raises(_dabc.InputError, match=r"epsilon schedule _NanSchedule: the threshold "
                                                r"it gave for generation 1 must be a number >= 0"):
        _run_1(None, tmp_path, _dabc.SingleCoreSampler(), epsilon=_NanSchedule())


@_pytest.mark.timeout(10)
def test_case7_duplicated_parameter_is_an_input_error():
    with _pytest.raises(_dabc.InputError, match=r"Prior: parameter 'mu' is given twice"):
        _dabc.Prior({"mu": _dabc.RV("norm", 0, 1)}, mu=_dabc.RV("norm", 5, 1))
    with _pytest.raises(_dabc.InputError, match=r"Prior: parameter '1' is given twice"):
        _dabc.Prior({1: _dabc.RV("norm", 0, 1), "1": _dabc.RV("norm", 5, 1)})
    prior = _dabc.Prior({"a": _dabc.RV("norm", 0, 1)}, b=_dabc.RV("norm", 0, 2))
    assert prior.names == ["a", "b"]


@_pytest.mark.timeout(10)
@_pytest.mark.parametrize(("make", "message"), [
    (lambda: _dabc.ListEpsilon([-1]), r"ListEpsilon: values\[0\] must be a number >= 0"),
    (lambda: _dabc.ListEpsilon([5, -1]), r"ListEpsilon: values\[1\] must be a number >= 0"),
    (lambda: _dabc.ListEpsilon([float("nan")]), r"ListEpsilon: values\[0\] must be a number"),
    (lambda: _dabc.ListEpsilon(["a"]), r"ListEpsilon: values\[0\] must be a number"),
    (lambda: _dabc.ListEpsilon([]), r"ListEpsilon needs at least one value"),
    (lambda: _dabc.ListEpsilon([1, 2]), r"ListEpsilon: the thresholds must not increase, but "
                                        r"values\[1\] = 2 is above values\[0\] = 1"),
    (lambda: _dabc.ListEpsilon([5, 3, 4]), r"must not increase, but values\[2\] = 4"),
    (lambda: _dabc.ConstantEpsilon(-0.5), r"ConstantEpsilon: epsilon must be a number >= 0"),
    (lambda: _dabc.ConstantEpsilon(float("nan")), r"ConstantEpsilon: epsilon must be"),
    (lambda: _dabc.QuantileEpsilon(alpha=0), r"QuantileEpsilon: alpha must be in \(0, 1\]"),
    (lambda: _dabc.QuantileEpsilon(alpha=float("nan")), r"alpha must be in \(0, 1\]"),
    (lambda: _dabc.QuantileEpsilon(multiplier=0), r"multiplier must be a finite number > 0"),
    (lambda: _dabc.MedianEpsilon(multiplier=-1), r"MedianEpsilon: multiplier must be"),
    (lambda: _dabc.MedianEpsilon(initial_epsilon=-1), r"MedianEpsilon: initial_epsilon must"),
], ids=["list-negative", "list-negative-later", "list-nan", "list-string", "list-empty",
        "list-increasing", "list-increasing-later", "constant-negative", "constant-nan",
        "quantile-alpha-0", "quantile-alpha-nan", "quantile-multiplier-0",
        "median-multiplier-negative", "median-initial-negative"])
def test_case8_bad_epsilon_arguments_are_input_errors(make, message):
    with _pytest.raises(_dabc.InputError, match=message):
        make()


@_pytest.mark.timeout(10)
def test_case8_valid_epsilon_lists():
    assert _dabc.ListEpsilon([float("inf"), 3, 3, 0]).values == [float("inf"), 3.0, 3.0, 0.0]
    assert _dabc.ConstantEpsilon(0).epsilon == 0.0


@_pytest.mark.timeout(30)
def test_case8_negative_distance_does_not_end_the_run_at_a_negative_epsilon(tmp_path):
    """The old run stopped after generation 1 with 'minimum_epsilon reached (epsilon -1.1)'."""
    with _pytest.raises(_dabc.InputError, match=r"distance 'negative_distance' returned -"):
        _run_1(negative_distance, tmp_path, _dabc.SingleCoreSampler())


# --- cases 2, 4, 12: Redis trust (HMAC-signed work and results, passwords), a restarted or
# vanished redis-server ---
# Real redis-servers (tests/redis_server.py) and real `dabc redis-worker` subprocesses; the
# models, references and helpers are test_redis.py's.
import logging as _logging  # noqa: E402
import os as _os16  # noqa: E402
import pickle as _pickle  # noqa: E402
import subprocess as _sp16  # noqa: E402
import sys as _sys16  # noqa: E402

import cloudpickle as _cloudpickle  # noqa: E402

import test_redis as _tr  # noqa: E402
from dabc.samplers.redis import connect as _redis_connect  # noqa: E402
from dabc.samplers.redis import load_secret as _load_secret  # noqa: E402
from dabc.samplers.redis import sign as _sign  # noqa: E402
from dabc.samplers.redis import verify as _verify  # noqa: E402
from determinism import assert_same as _same16  # noqa: E402
from determinism import snapshot as _snap16  # noqa: E402
from redis_server import RedisServer as _RedisServer  # noqa: E402
from redis_server import Worker as _Worker  # noqa: E402
from redis_server import wait_for as _wait_for  # noqa: E402


class _Evil:
    """Unpickling this runs ``touch <marker>``: the payload of the Redis attacks."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (_os16.system, (f"touch {self.marker}",))


@_pytest.fixture
def redis16(tmp_path):
    """``redis16.server(password=..., appendonly=...)`` starts a private redis-server,
    ``redis16.workers(server, k, **kw)`` k worker subprocesses; all are stopped by PID."""

    class Pool:
        servers: list = []
        started: list = []

        def server(self, **kwargs):
            s = _RedisServer(tmp_path / f"redis{len(self.servers)}", **kwargs).start()
            self.servers.append(s)
            return s

        def workers(self, server, k=1, **kwargs):
            new = [_Worker(server, log_dir=tmp_path, **kwargs) for _ in range(k)]
            self.started.extend(new)
            return new

    pool = Pool()
    pool.servers, pool.started = [], []
    yield pool
    for w in pool.started:
        w.reap()
    for s in pool.servers:
        s.stop()


def _plant(client, aid: str, work: bytes) -> None:
    """A fake analysis, listed first, with one queued task and the given work."""
    client.zadd("dabc:analyses", {aid: 0})
    client.set(f"dabc:a:{aid}:gen", "g-0", ex=120)
    client.set(f"dabc:a:{aid}:work:g-0", work, ex=120)
    client.rpush(f"dabc:a:{aid}:queue:g-0", "ids:0:1")
    client.expire(f"dabc:a:{aid}:queue:g-0", 120)


def _forget(client, aid: str) -> None:
    client.zrem("dabc:analyses", aid)
    for k in client.keys(f"dabc:a:{aid}:*"):
        client.delete(k)


@_pytest.mark.timeout(120)
def test_case4_redis_workers_refuse_a_planted_analysis(redis16, tmp_path, tmp_path_factory):
    """A planted analysis whose work would run ``touch`` on the workers, unsigned or signed
    with another secret, is refused by every worker and logged on its stderr; a real run on
    the same server and workers still gives the reference."""
    server = redis16.server()
    ws = redis16.workers(server, 2)
    ref = _tr.reference("dyn", tmp_path_factory)
    markers = {"evil0unsigned": tmp_path / "pwned-unsigned",
               "evil1forged": tmp_path / "pwned-forged"}
    _tr.wait_registered(server, 2)
    with server.client() as c:
        _plant(c, "evil0unsigned", _cloudpickle.dumps(_Evil(markers["evil0unsigned"])))
        forged = _sign(b"not-the-shared-secret-0123456789", "work", "evil1forged", "g-0",
                       _cloudpickle.dumps(_Evil(markers["evil1forged"])))
        _plant(c, "evil1forged", forged)
        t0 = _time.monotonic()
        for w in ws:
            for aid in markers:
                _wait_for(lambda w=w, aid=aid: f"refused the work of analysis {aid}"
                          in w.stderr(), 30, 0.05, f"worker {w.pid} to refuse {aid}")
        took = _time.monotonic() - t0
        got = _snap16(_tr.run_abc(_tr.Sleepy(0.0005), _tr.PRIOR_X, _tr.sampler_for(server),
                                    tmp_path / "real.db"))
        _same16(got, ref)
        assert not any(m.exists() for m in markers.values()), "the planted work ran"
        err = ws[0].stderr()
        assert "carries no dabc signature" in err and "does not verify" in err, err
        assert c.llen("dabc:a:evil0unsigned:queue:g-0") == 1  # refused claims go back
        for aid in markers:
            _forget(c, aid)
    stats = _tr.finish(server, ws)
    assert all(st["refused"] == 2 for st in stats), stats
    print(f"case 4 (worker): both planted analyses refused and logged by both workers "
          f"within {took:.2f} s")
    assert took < 10, f"refusal logged after {took:.1f} s"


@_pytest.mark.timeout(120)
def test_case4_redis_master_refuses_crafted_results(redis16, tmp_path, tmp_path_factory,
                                                   caplog):
    """Entries pushed into a live analysis' results list (a plain pickle that would run
    ``touch`` on the master, one signed with another secret, and a genuinely signed result
    replayed from another analysis) are refused, logged and never unpickled; the run gives
    the reference."""
    caplog.set_level(_logging.WARNING, logger="dabc")
    server = redis16.server()
    ws = redis16.workers(server, 2)
    ref = _tr.reference("dyn", tmp_path_factory)
    _tr.wait_registered(server, 2)
    s = _tr.sampler_for(server)
    secret = _load_secret(server.secret_file)
    m_plain, m_forged, m_replay = (tmp_path / f"pwned-{k}" for k in ("plain", "forged", "rep"))
    bg = _tr.Background(_tr.run_abc, _tr.Sleepy(0.005), _tr.PRIOR_X, s, tmp_path / "m.db")
    with server.client() as c:
        gen = _tr.wait_generation(c, s, 1, bg)
        results = f"{s.prefix}:results:{gen}"
        task = b"ids:0:1"
        c.rpush(results, _pickle.dumps((task, _Evil(m_plain))))
        c.rpush(results, task + b"\n" + _sign(b"not-the-shared-secret-0123456789", "result",
                                              s.analysis_id, gen, _pickle.dumps(_Evil(m_forged)),
                                              task))
        c.rpush(results, task + b"\n" + _sign(secret, "result", "another-analysis", gen,
                                              _pickle.dumps(_Evil(m_replay)), task))
        t0 = _time.monotonic()
        _wait_for(lambda: sum("refused a result entry" in r.getMessage()
                              for r in caplog.records) >= 3, 30, 0.01, "three refusals")
        took = _time.monotonic() - t0
    got = _snap16(bg.result(120))
    _same16(got, ref)
    assert not (m_plain.exists() or m_forged.exists() or m_replay.exists()), "a result ran"
    msgs = [r.getMessage() for r in caplog.records if "refused a result entry" in r.getMessage()]
    assert any("no dabc signature" in m for m in msgs), msgs
    assert sum("does not verify" in m for m in msgs) >= 2, msgs
    assert all(s.analysis_id in m for m in msgs), msgs
    _tr.finish(server, ws)
    print(f"case 4 (master): three crafted results refused within {took:.2f} s")
    assert took < 5, took


def test_case4_redis_signatures_bind_analysis_generation_and_task():
    """A signed payload verifies only for its own analysis, generation and task, and only
    with its secret; a secret file others can read is refused."""
    key, body = b"k" * 32, b"payload"
    signed = _sign(key, "work", "a1", "g-1", body)
    assert _verify(key, "work", "a1", "g-1", signed) == (body, "")
    for args in (("work", "a2", "g-1"), ("work", "a1", "g-2"), ("result", "a1", "g-1")):
        assert _verify(key, *args, signed)[0] is None, args
    assert _verify(b"x" * 32, "work", "a1", "g-1", signed)[0] is None
    tampered = signed[:-1] + b"X"
    assert _verify(key, "work", "a1", "g-1", tampered)[0] is None
    r = _sign(key, "result", "a1", "g-1", body, b"ids:0:4")
    assert _verify(key, "result", "a1", "g-1", r, b"ids:0:4")[0] == body
    assert _verify(key, "result", "a1", "g-1", r, b"ids:4:8")[0] is None


def test_case4_redis_secret_file_must_be_private(tmp_path, monkeypatch):
    f = tmp_path / "secret"
    f.write_text("0123456789abcdef0123\n")
    f.chmod(0o644)
    with _pytest.raises(_dabc.InputError, match=r"readable by group or others.*chmod 600"):
        _load_secret(f)
    monkeypatch.setenv("DABC_REDIS_SECRET_FILE", str(f))
    monkeypatch.delenv("DABC_REDIS_SECRET", raising=False)
    with _pytest.raises(_dabc.InputError, match="readable by group or others"):
        _load_secret()
    f.chmod(0o600)
    assert _load_secret() == b"0123456789abcdef0123"
    monkeypatch.setenv("DABC_REDIS_SECRET", "short")
    with _pytest.raises(_dabc.InputError, match="at least 16"):
        _load_secret()
    # no secret configured: a random one is created in the default file (mode 0600) and
    # reused, so master and workers of one user on one machine agree without set-up
    monkeypatch.delenv("DABC_REDIS_SECRET")
    monkeypatch.delenv("DABC_REDIS_SECRET_FILE")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    first = _load_secret()
    made = tmp_path / "config" / "dabc" / "redis-secret"
    assert made.stat().st_mode & 0o777 == 0o600 and len(first) == 64
    assert _load_secret() == first


@_pytest.mark.timeout(60)
def test_case4_redis_worker_with_another_secret_makes_a_clear_worker_error(redis16, tmp_path):
    """Workers that do not share the master's secret refuse its work; the master says so
    after no_worker_timeout instead of waiting silently."""
    server = redis16.server()
    other = tmp_path / "other-secret"
    other.write_text("another-secret-0123456789\n")
    other.chmod(0o600)
    (w,) = redis16.workers(server, 1, env={"DABC_REDIS_SECRET_FILE": str(other)})
    _tr.wait_registered(server, 1)
    s = _tr.sampler_for(server, no_worker_timeout=2)
    t0 = _time.monotonic()
    with _pytest.raises(_dabc.WorkerError, match=r"1 refused it .*same secret"):
        _tr.run_abc(_tr.Sleepy(0.0), _tr.PRIOR_X, s, tmp_path / "x.db")
    took = _time.monotonic() - t0
    print(f"case 4 (other secret): WorkerError after {took:.2f} s")
    assert took < 10, took
    assert "refused the work of analysis" in w.stderr()
    _tr.finish(server, [w])


@_pytest.mark.timeout(90)
def test_case4_redis_without_password_warns_and_off_loopback_is_refused(redis16, tmp_path,
                                                                        tmp_path_factory):
    server = redis16.server(password=None)
    (w,) = redis16.workers(server, 1)
    ref = _tr.reference("dyn", tmp_path_factory, gens=1)
    _tr.wait_registered(server, 1)
    s = _dabc.RedisEvalParallelSampler(host=server.host, port=server.port,
                                       secret_file=server.secret_file)
    with _pytest.warns(UserWarning, match="has no password"):
        got = _snap16(_tr.run_abc(_tr.Sleepy(0.0), _tr.PRIOR_X, s, tmp_path / "np.db",
                                    gens=1))
    _same16(got, ref)
    assert "has no password" in w.stderr()
    _tr.finish(server, [w])
    # not on loopback: refused at once, before any connection; --insecure lets it through
    for host in ("10.255.255.1", "redis.example.org"):
        t0 = _time.monotonic()
        with _pytest.raises(_dabc.InputError, match="not on loopback.*insecure"):
            _redis_connect(host, 6379)
        assert _time.monotonic() - t0 < 0.5
    with _pytest.raises(_dabc.InputError, match="Cannot reach Redis"):
        _redis_connect("dabc-no-such-host.invalid", 6379, insecure=True)
    cli = _sp16.run([_sys16.executable, "-m", "dabc.cli.redis_cli", "redis-worker",
                           "--host", "10.255.255.1"], capture_output=True, text=True,
                          timeout=60, stdin=_sp16.DEVNULL)
    assert cli.returncode == 1 and "not on loopback" in cli.stderr, cli.stderr


@_pytest.mark.timeout(90)
def test_redis_password_from_environment_or_file(redis16, tmp_path, tmp_path_factory,
                                                 monkeypatch):
    """The password need not be on a command line: REDISCLI_AUTH (worker),
    DABC_REDIS_PASSWORD (master), or a private file (manager)."""
    server = redis16.server()
    (w,) = redis16.workers(server, 1, auth=False, env={"REDISCLI_AUTH": server.password})
    assert server.password not in " ".join(w.proc.args)
    ref = _tr.reference("dyn", tmp_path_factory, gens=1)
    _tr.wait_registered(server, 1)
    monkeypatch.delenv("REDISCLI_AUTH", raising=False)
    monkeypatch.setenv("DABC_REDIS_PASSWORD", server.password)
    s = _dabc.RedisEvalParallelSampler(host=server.host, port=server.port,
                                       secret_file=server.secret_file)
    _same16(_snap16(_tr.run_abc(_tr.Sleepy(0.0), _tr.PRIOR_X, s, tmp_path / "e.db",
                                       gens=1)), ref)
    monkeypatch.delenv("DABC_REDIS_PASSWORD")
    pw = tmp_path / "pw"
    pw.write_text(server.password + "\n")
    pw.chmod(0o600)
    rows = _tr.manager("info", server.host, server.port, password_file=pw)
    assert rows[0]["live_workers"] == 1
    pw.chmod(0o640)
    with _pytest.raises(_dabc.InputError, match="readable by group or others"):
        _tr.manager("info", server.host, server.port, password_file=pw)
    _tr.finish(server, [w])


def _keys_without_ttl(server) -> list[str]:
    with server.client() as c:
        return [k.decode() for k in c.keys("*") if c.ttl(k) == -1]


@_pytest.mark.timeout(240)
@_pytest.mark.parametrize("appendonly", [False, True], ids=["no-persistence", "aof"])
def test_case2_redis_server_killed_and_restarted_mid_run(appendonly, redis16, tmp_path,
                                                        tmp_path_factory, caplog):
    """SIGKILL of redis-server mid-generation, restarted on the same port: without
    persistence (the generation's keys are gone) or with AOF (``appendfsync always``). The
    master re-publishes the work and the unfinished tasks, the workers reconnect, and the
    run gives the uninterrupted reference; no key is left without a TTL."""
    caplog.set_level(_logging.WARNING, logger="dabc")
    server = redis16.server(appendonly=appendonly)
    ws = redis16.workers(server, 2)
    ref = _tr.reference("dyn", tmp_path_factory)
    _tr.wait_registered(server, 2)
    s = _tr.sampler_for(server)
    bg = _tr.Background(_tr.run_abc, _tr.Sleepy(0.005), _tr.PRIOR_X, s, tmp_path / "k.db")
    with server.client() as c:
        _tr.wait_generation(c, s, 1, bg)
        _wait_for(lambda: int(c.hget(f"{s.prefix}:info", "accepted") or 0) >= 40, 60, 0.005,
                  "40 accepted in generation 1")
        accepted = int(c.hget(f"{s.prefix}:info", "accepted"))
    run_id = server.run_id()
    server.kill()
    t_kill = _time.monotonic()
    _time.sleep(1.0)
    server.restart()
    assert server.run_id() != run_id
    _wait_for(lambda: any("re-published its work" in r.getMessage() for r in caplog.records),
              30, 0.05, "the master to re-publish")
    republished = _time.monotonic() - t_kill
    assert not _keys_without_ttl(server)
    got = _snap16(bg.result(120))
    took = _time.monotonic() - t_kill
    _same16(got, ref)
    assert accepted < _tr.N, "the server was killed after the generation was complete"
    for w in ws:
        assert w.alive(), w.stderr()
        assert "lost the connection to Redis" in w.stderr()
    _tr.finish(server, ws)
    print(f"case 2 ({'aof' if appendonly else 'no persistence'}): re-published "
          f"{republished:.2f} s after the kill, run done {took:.2f} s after it")
    assert republished < 10 and took < 90, (republished, took)


@_pytest.mark.timeout(90)
def test_case12_redis_killed_for_good_is_a_worker_error(redis16, tmp_path, caplog):
    """redis-server SIGKILLed and not restarted: the master raises WorkerError naming the
    server after reconnect_timeout (here 4 s), the workers exit after theirs (5 s) with a
    one-line error, and the generations stored before stay readable."""
    caplog.set_level(_logging.WARNING, logger="dabc")
    server = redis16.server()
    ws = redis16.workers(server, 2, args=("--reconnect-timeout", "5s"))
    _tr.wait_registered(server, 2)
    s = _tr.sampler_for(server, reconnect_timeout=4)
    db = tmp_path / "gone.db"
    bg = _tr.Background(_tr.run_abc, _tr.Sleepy(0.005), _tr.PRIOR_X, s, db, gens=6)
    with server.client() as c:
        _tr.wait_generation(c, s, 2, bg)
    server.kill()
    t0 = _time.monotonic()
    where = f"{server.host}:{server.port}"
    with _pytest.raises(_dabc.WorkerError,
                        match=rf"lost the connection to Redis at {where} .*ABCSMC\.load"):
        bg.result(60)
    took = _time.monotonic() - t0
    assert 4 <= took < 12, took
    h = _dabc.History(f"sqlite:///{db}")
    assert h.n_populations >= 2
    assert h.all_runs().status.tolist() == ["failed"]
    assert len(h.get_distribution(t=1)[0]) == _tr.N
    for w in ws:
        code = w.wait(30)
        err = w.stderr()
        assert code == 1, err
        assert f"dabc redis-worker: error: lost the connection to Redis at {where}" in err, err
        assert "Traceback" not in err, err
    took_workers = _time.monotonic() - t0
    print(f"case 12: master WorkerError after {took:.2f} s, workers exited after "
          f"{took_workers:.2f} s")
    assert took_workers < 20, took_workers


# --- cases 9, 10, 11: read-only databases, concurrent starts, a corrupt generation ---
# 9: a database on a read-only file system (or an immutable file or folder) is opened
# read-only: every reader works, only a write says "Cannot write"; a WAL database copied
# there without its -wal/-shm files is read too. 10: many processes starting on one new
# database all succeed (creating the tables retries a lost race). 11: a damaged page or
# blob makes one generation unreadable; info and export report it and go on with the rest.
import multiprocessing as _mp  # noqa: E402
import os as _os  # noqa: E402, F811  (also imported above, by another case)
import shutil as _shutil  # noqa: E402
import sqlite3 as _sqlite3  # noqa: E402
import subprocess as _subprocess  # noqa: E402, F811
import sys as _sys  # noqa: E402, F811
import uuid as _uuid  # noqa: E402
from pathlib import Path as _Path  # noqa: E402

import pandas as _pd  # noqa: E402

_HERE = _Path(__file__).resolve().parent


def _write_run_9(db, generations=3, population=60):
    """A real run written by dabc in a child process (so the file is closed and
    checkpointed, as a finished run leaves it)."""
    _subprocess.run([_sys.executable, str(_HERE / "fault_storage.py"), str(db),
                     str(generations), str(population)], check=True, timeout=120)


def _dabc_cli_9(*args):
    return _subprocess.run([_sys.executable, "-m", "dabc", *map(str, args)],
                           capture_output=True, text=True, timeout=120,
                           stdin=_subprocess.DEVNULL)


def _check_reads_but_not_writes_9(db, n_generations, cli=True):
    tic = _time.perf_counter()
    h = _dabc.History(db)
    assert h.max_t == n_generations - 1
    params, w = h.get_distribution(0)
    assert len(params) == 60 and abs(w.sum() - 1) < 1e-12
    assert len(h.all_runs()) == 1 and h.get_all_populations()["t"].tolist() == list(
        range(n_generations))
    assert h.state(h.max_t)
    cfg_history, _runs = _dabc.storage.open_history(db)
    assert cfg_history.max_t == n_generations - 1
    took = _time.perf_counter() - tic
    assert took < 10, took
    for write in (lambda: h.set_status("done", "x"),
                  lambda: h.create_run(seed=1, population_size=1, model_names=["m"],
                                       param_names=[["a"]], stat_columns=["y"],
                                       observed=b"", config=b"", version="x"),
                  lambda: h.append_generation(99, {}, {}, b"")):
        with _pytest.raises(_dabc.InputError, match="Cannot write the database"):
            write()
    h.engine.dispose()
    cfg_history.engine.dispose()
    if not cli:
        return
    info = _dabc_cli_9("info", db)
    assert info.returncode == 0, info.stderr
    assert "Traceback" not in info.stderr
    assert f"\n  {n_generations - 1} " in info.stdout
    out = _Path(f"/tmp/dabc-ro-export-{_uuid.uuid4().hex}.csv")
    try:
        exp = _dabc_cli_9("export", db, "--generation", "all", "--out", out)
        assert exp.returncode == 0, exp.stderr
        assert _pd.read_csv(out)["t"].nunique() == n_generations
    finally:
        out.unlink(missing_ok=True)


@_pytest.fixture
def read_only_mount(tmp_path):
    """A tmpfs mounted at a folder of tmp_path: yields (folder, make_read_only)."""
    where = tmp_path / "mnt"
    where.mkdir()
    proc = _subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(where)],
                           capture_output=True, text=True)
    if proc.returncode != 0:
        _pytest.skip(f"cannot mount a tmpfs here (needs root and mount rights): "
                     f"{proc.stderr.strip()}; the chattr +i test covers read-only files")

    def make_read_only():
        _subprocess.run(["mount", "-o", "remount,ro", str(where)], check=True)

    try:
        yield where, make_read_only
    finally:
        _subprocess.run(["umount", "-l", str(where)], check=False)


@_pytest.mark.timeout(180)
def test_case9_database_on_a_read_only_file_system_is_read(tmp_path, read_only_mount):
    where, make_read_only = read_only_mount
    db = tmp_path / "run.db"
    _write_run_9(db)
    with open(db, "rb") as f:
        assert f.read(20)[18:20] == b"\x02\x02"  # written in WAL mode
    assert not _os.path.exists(f"{db}-wal")
    _shutil.copy(db, where / "run.db")  # the WAL database without its -wal/-shm files
    make_read_only()
    with _pytest.raises(OSError):
        (where / "probe").write_text("x")
    ro_db = where / "run.db"
    _check_reads_but_not_writes_9(ro_db, 3)
    _check_reads_but_not_writes_9(f"sqlite:///{ro_db}", 3, cli=False)
    with _pytest.raises(_dabc.InputError, match="read-only file system"):
        _dabc.History(ro_db).set_status("done")
    assert sorted(_os.listdir(where)) == ["run.db"]
    # a run started on it says so at once, naming the cause
    abc = _dabc.ABCSMC(_gauss_1, _PRIOR_1, population_size=20,
                       sampler=_dabc.SingleCoreSampler(), progress=False)
    with _pytest.raises(_dabc.InputError, match="Cannot write the database.*read-only file "
                        "system"):
        abc.run({"y": 0.0}, db=ro_db, max_generations=1)
    # a new database there cannot be created, and says so
    with _pytest.raises(_dabc.InputError, match="Cannot write the database"):
        _dabc.History(where / "new.db", create=True)


@_pytest.mark.timeout(180)
def test_case9_immutable_file_and_folder_are_read(tmp_path):
    if _subprocess.run(["which", "chattr"], capture_output=True).returncode != 0:
        _pytest.skip("chattr is not installed")
    folder = tmp_path / "frozen"
    folder.mkdir()
    db = folder / "run.db"
    _write_run_9(db)
    made = []
    try:
        if _subprocess.run(["chattr", "+i", str(db)], capture_output=True).returncode != 0:
            _pytest.skip("chattr +i is not supported on this file system or user")
        made.append(db)
        assert not _os.access(db, _os.W_OK)
        _check_reads_but_not_writes_9(db, 3, cli=False)  # immutable file, writable folder
        _subprocess.run(["chattr", "+i", str(folder)], check=True)
        made.append(folder)
        _check_reads_but_not_writes_9(db, 3)  # and in an immutable folder
    finally:
        for p in reversed(made):
            _subprocess.run(["chattr", "-i", str(p)], check=False)


def _concurrent_starts_10(db, n):
    ctx = _mp.get_context("forkserver")
    ctx.set_forkserver_preload(["dabc", "fault_storage"])
    import fault_storage

    barrier, results = ctx.Barrier(n), ctx.Queue()
    procs = [ctx.Process(target=fault_storage.start_run, args=(db, barrier, results))
             for _ in range(n)]
    for p in procs:
        p.start()
    try:
        got = [results.get(timeout=150) for _ in procs]
    finally:
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():
                p.kill()
    return got


@_pytest.fixture
def _tests_on_path_10(monkeypatch):
    monkeypatch.syspath_prepend(str(_HERE))


@_pytest.mark.timeout(240)
def test_case10_concurrent_starts_on_one_new_sqlite_file(tmp_path, _tests_on_path_10, caplog):
    db = str(tmp_path / "shared.db")
    tic = _time.perf_counter()
    got = _concurrent_starts_10(db, 40)
    took = _time.perf_counter() - tic
    errors = [m for kind, m in got if kind != "ok"]
    assert not errors, f"{len(errors)} of 40 starts failed: {sorted(set(errors))[:3]}"
    ids = sorted(m for _, m in got)
    assert ids == list(range(1, 41)), ids
    h = _dabc.History(db)
    assert sorted(h.all_runs()["id"]) == ids
    h.engine.dispose()
    assert took < 200, took


@_pytest.mark.timeout(240)
def test_case10_concurrent_starts_on_one_new_postgres_schema(pg_url, _tests_on_path_10):
    got = _concurrent_starts_10(pg_url, 30)
    errors = [m for kind, m in got if kind != "ok"]
    assert not errors, f"{len(errors)} of 30 starts failed: {sorted(set(errors))[:3]}"
    ids = sorted(m for _, m in got)
    assert len(set(ids)) == 30
    h = _dabc.History(pg_url)
    assert sorted(h.all_runs()["id"]) == ids
    h.engine.dispose()


def _page_of_blob_11(db, t):
    """The offset of two consecutive pages of the file filled by generation t's blob."""
    con = _sqlite3.connect(db)
    page = con.execute("PRAGMA page_size").fetchone()[0]
    blob = con.execute("SELECT data FROM dabc_particles WHERE t = ?", (t,)).fetchone()[0]
    con.close()
    raw = _Path(db).read_bytes()
    full = [i for i in range(len(raw) // page)
            if raw[i * page + 4:(i + 1) * page] in blob]  # an overflow page: 4-byte link
    pairs = [i for i in full if i + 1 in full]
    assert pairs, "generation's blob does not span two full pages; raise the population"
    return pairs[0] * page, 2 * page


@_pytest.mark.timeout(240)
def test_case11_a_corrupt_generation_is_reported_and_the_rest_exported(tmp_path):
    db = tmp_path / "run.db"
    _write_run_9(db, generations=12, population=400)
    offset, size = _page_of_blob_11(db, 7)
    assert size == 8192
    with open(db, "r+b") as f:  # one damaged 8 KiB block inside generation 7's particles
        f.seek(offset)
        f.write(_np.random.default_rng(0).bytes(size))
    con = _sqlite3.connect(db)  # and a blob overwritten with garbage in generation 4
    con.execute("UPDATE dabc_particles SET data = ? WHERE t = 4", (b"garbage" * 100,))
    con.commit()
    con.close()

    h = _dabc.History(db)
    for t, why in ((7, "malformed|bad npz blob"), (4, "bad npz blob.*not an npz archive")):
        with _pytest.raises(_dabc.InputError, match=f"Generation {t} of run 1 .*({why}).*"
                            "backup"):
            h.get_arrays(t)
    assert len(h.get_distribution(0, t=6)[0]) == 400
    assert h.unreadable_generations().keys() == {4, 7}
    h.engine.dispose()

    tic = _time.perf_counter()
    info = _dabc_cli_9("info", db)
    took_info = _time.perf_counter() - tic
    assert info.returncode == 1, (info.stdout, info.stderr)
    assert "Traceback" not in info.stderr
    lines = {ln.split()[0]: ln for ln in info.stdout.splitlines()[-12:]}
    assert sorted(map(int, lines)) == list(range(12))
    assert lines["4"].endswith("UNREADABLE") and lines["7"].endswith("UNREADABLE")
    assert lines["6"].endswith("ok")
    err = info.stderr.strip().splitlines()
    assert len(err) == 2 and all("is unreadable" in e for e in err)

    out = tmp_path / "all.csv"
    tic = _time.perf_counter()
    exp = _dabc_cli_9("export", db, "--generation", "all", "--out", out)
    took_export = _time.perf_counter() - tic
    assert exp.returncode == 1, exp.stderr
    assert "Traceback" not in exp.stderr
    err = exp.stderr.strip().splitlines()
    assert err[:2] == [
        f"dabc export: generation {t} of run 1 is unreadable ({r}): skipped"
        for t, r in zip((4, 7), (h.check_generation(4), h.check_generation(7)), strict=True)]
    assert len(err) == 3 and err[2].startswith("wrote 4,000 particles of run 1 (10 generations)")
    df = _pd.read_csv(out)
    assert sorted(df["t"].unique()) == [t for t in range(12) if t not in (4, 7)]
    assert (df.groupby("t").size() == 400).all()
    last = _dabc_cli_9("export", db, "--generation", "7", "--out", tmp_path / "seven.csv")
    assert last.returncode == 1 and "Traceback" not in last.stderr
    assert _re.fullmatch(r"dabc export: error: Nothing exported: .*generation 7: .*restore it "
                         r"from a backup\.", last.stderr.strip())
    assert not (tmp_path / "seven.csv").exists()
    assert took_info < 30 and took_export < 30, (took_info, took_export)


# --- cases 3, 5, 13: hanging simulations, orphaned workers, Dask dashboards, worker recycling ---
# Case 3: a simulation that never returns (1 call in 1,000) once stalled multicore for good
# and left every Dask worker stuck; with simulation_timeout= it counts as a failed evaluation
# ("simulation exceeded simulation_timeout=1 s with parameters {...}"), the run finishes and
# gives the same populations on every sampler. Without a limit, one warning per generation
# names the slow simulation. A SIGKILLed master's workers die with it.
# Case 5: a default DaskDistributedSampler() opens no HTTP port (it served Dask's pages on
# 127.0.0.1:8787 and one port per worker). Case 13: multicore workers are recycled after
# max_tasks_per_worker tasks or above max_worker_memory, with identical results.
import signal as _signal  # noqa: E402
import socket as _socket  # noqa: E402
import warnings as _warnings  # noqa: E402

import fault_models as _fm  # noqa: E402
from determinism import assert_same as _assert_same  # noqa: E402
from determinism import snapshot as _snapshot  # noqa: E402

_C3_TIMEOUT = 1.0
_C3_REFERENCE: dict = {}


def _run_3(model, sampler, db, n=300, gens=2, **kwargs):
    abc = _dabc.ABCSMC(model, _fm.PRIOR_X, population_size=n, sampler=sampler, seed=11,
                       progress=False, **kwargs)
    # About 1 call in 1,000 hangs: which generations reach one depends on the random streams.
    # These cases were laid out under stream scheme 1 (dabc.engine.work), so they keep it;
    # tests/test_fast_path.py times out hung calls under scheme 2.
    abc._stream_scheme = 1
    return abc.run(_fm.OBS, db=f"sqlite:///{db}", max_generations=gens)


def _c3_reference(tmp_path_factory):
    """The hanging model's run on one core with the limit: every sampler must match it."""
    if "snap" not in _C3_REFERENCE:
        db = tmp_path_factory.mktemp("c3") / "single.db"
        h = _run_3(_fm.hangs_1_in_1000, _dabc.SingleCoreSampler(simulation_timeout=_C3_TIMEOUT),
                   db)
        _C3_REFERENCE["snap"] = _snapshot(h)
    return _C3_REFERENCE["snap"]


def _timeouts_logged(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if "simulation exceeded simulation_timeout=1 s with parameters {'x': " in
            r.getMessage() and "raise simulation_timeout or fix the model" in r.getMessage()]


@_pytest.mark.timeout(60)
@_pytest.mark.parametrize("kind", ["eval", "particle"])
def test_case3_multicore_simulation_timeout_fails_the_hung_evaluations(kind, tmp_path, caplog,
                                                                       tmp_path_factory):
    """Once: no generation after 90 s. Now: each hung call fails after 1 s; measured ~3 s."""
    caplog.set_level("WARNING", logger="dabc.samplers")
    cls = (_dabc.MulticoreEvalParallelSampler if kind == "eval"
           else _dabc.MulticoreParticleParallelSampler)
    t0 = _time.monotonic()
    gens = 2 if kind == "eval" else 3  # STAT's streams reach a hanging call in generation 2
    with cls(2, simulation_timeout=_C3_TIMEOUT) as sampler:
        h = _run_3(_fm.hangs_1_in_1000, sampler, tmp_path / "run.db", gens=gens)
    assert h.n_populations == gens
    assert _time.monotonic() - t0 < 40
    assert _timeouts_logged(caplog), [r.getMessage() for r in caplog.records]
    if kind == "eval":  # DYN: the same populations as on one core
        _assert_same(_snapshot(h), _c3_reference(tmp_path_factory))
    else:  # STAT: the same populations run after run
        with cls(2, simulation_timeout=_C3_TIMEOUT) as sampler:
            again = _run_3(_fm.hangs_1_in_1000, sampler, tmp_path / "again.db", gens=gens)
        _assert_same(_snapshot(again), _snapshot(h))


@_pytest.mark.timeout(60)
def test_case3_uninterruptible_simulation_kills_its_worker_and_fails(tmp_path, caplog,
                                                                     tmp_path_factory):
    """A simulation that blocks SIGALRM (as C code may) is ended by the master: it kills the
    worker after the limit plus 1 s, and the call fails when its task runs again. The
    populations equal those where the same evaluations were interrupted normally."""
    caplog.set_level("WARNING", logger="dabc.samplers")
    with _dabc.MulticoreEvalParallelSampler(2, simulation_timeout=_C3_TIMEOUT) as sampler:
        h = _run_3(_fm.stuck_uninterruptibly, sampler, tmp_path / "run.db")
    assert any("could not be interrupted" in r.getMessage() for r in caplog.records)
    assert _timeouts_logged(caplog)
    ref = _c3_reference(tmp_path_factory)
    got = _snapshot(h)
    _assert_same(got, ref)


@_pytest.mark.timeout(60)
def test_case3_without_a_limit_a_very_slow_simulation_draws_a_warning(tmp_path, caplog):
    """A 3 s call among 1 ms calls: warned about after ~1.5 s, in the log and as a Python
    warning in the master, suggesting simulation_timeout=."""
    from dabc.samplers.multicore import SlowSimulationWarning

    caplog.set_level("WARNING", logger="dabc.samplers")
    with _warnings.catch_warnings(record=True) as seen, \
            _dabc.MulticoreEvalParallelSampler(2) as sampler:
        _warnings.simplefilter("always")
        h = _run_3(_fm.slow_1_in_1000, sampler, tmp_path / "run.db", gens=1)
    assert h.n_populations == 1
    slow = [w for w in seen if issubclass(w.category, SlowSimulationWarning)]
    assert len(slow) == 1, [str(w.message) for w in seen]
    text = str(slow[0].message)
    assert "over 100 times the median time per simulation" in text
    assert "pass simulation_timeout=<seconds>" in text
    assert any(r.getMessage() == text for r in caplog.records)


_C3_ORPHAN_SCRIPT = """
import dabc, fault_models
sampler = dabc.MulticoreEvalParallelSampler(2)
abc = dabc.ABCSMC(fault_models.pid_then_hang, fault_models.PRIOR_X, population_size=10,
                  sampler=sampler, seed=1, progress=False)
abc.run(fault_models.OBS, db="sqlite:///{db}", max_generations=1)
"""


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")  # zombie: dead
    except (FileNotFoundError, ProcessLookupError):
        return True


@_pytest.mark.timeout(60)
def test_case3_workers_die_with_a_sigkilled_master(tmp_path):
    """Once: the hung worker lived on as an orphan. Now: gone within ~0.1 s (limit 5 s)."""
    pidfile = tmp_path / "pids"
    script = tmp_path / "master.py"
    script.write_text(_C3_ORPHAN_SCRIPT.format(db=tmp_path / "orphan.db"))
    env = {**_os.environ, "DABC_TEST_PIDFILE": str(pidfile),
           "PYTHONPATH": _os.pathsep.join([_os.path.dirname(__file__),
                                           _os.environ.get("PYTHONPATH", "")])}
    master = _subprocess.Popen([_sys.executable, str(script)], env=env)
    pids: set[int] = set()
    try:
        deadline = _time.monotonic() + 40
        while len(pids) < 2 and _time.monotonic() < deadline:
            _time.sleep(0.1)
            if pidfile.exists():
                pids = {int(x) for x in pidfile.read_text().split()}
            assert master.poll() is None, "the master exited by itself"
        assert len(pids) == 2, f"worker PIDs seen: {pids}"
        master.send_signal(_signal.SIGKILL)
        master.wait(10)
        deadline = _time.monotonic() + 5
        while not all(_gone(p) for p in pids) and _time.monotonic() < deadline:
            _time.sleep(0.05)
        alive = [p for p in pids if not _gone(p)]
        assert not alive, f"worker processes {alive} outlived their SIGKILLed master"
    finally:
        if master.poll() is None:
            master.kill()
        for p in pids:  # the workers this test started, if any survived
            if not _gone(p):
                _os.kill(p, _signal.SIGKILL)


@_pytest.mark.timeout(180)
def test_case3_dask_simulation_timeout_fails_the_hung_evaluations(tmp_path, caplog,
                                                                  tmp_path_factory):
    """Once: every Dask worker stuck within a second. Now: each hung call fails after 1 s
    (an asynchronous exception in the worker thread), populations as on one core."""
    from distributed import Client

    from dabc.samplers.dask import local_cluster

    caplog.set_level("WARNING", logger="dabc.samplers")
    with local_cluster(n_workers=2) as cluster, Client(cluster) as client:
        t0 = _time.monotonic()
        sampler = _dabc.DaskDistributedSampler(client, simulation_timeout=_C3_TIMEOUT)
        h = _run_3(_fm.hangs_1_in_1000, sampler, tmp_path / "dask.db")
        elapsed = _time.monotonic() - t0
    assert h.n_populations == 2
    assert elapsed < 60, elapsed
    assert _timeouts_logged(caplog)
    _assert_same(_snapshot(h), _c3_reference(tmp_path_factory))


def _listening(pid: int) -> list[tuple[str, int]]:
    import psutil

    return sorted({(c.laddr.ip, c.laddr.port)
                   for c in psutil.Process(pid).net_connections(kind="tcp")
                   if c.status == psutil.CONN_LISTEN})


def _answers_http(host: str, port: int) -> bytes:
    """The first bytes answered to an HTTP GET (a dashboard answers 'HTTP/1.1 ...'; Dask's
    comm ports answer nothing or close)."""
    try:
        with _socket.create_connection((host, port), timeout=2) as s:
            s.sendall(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n")
            return s.recv(64)
    except OSError:
        return b""


class _ProbingDaskSampler(_dabc.DaskDistributedSampler):
    """A default DaskDistributedSampler() that lists its processes' listening sockets during
    the run (after its first generation, while its own cluster is up)."""

    probed: dict | None = None

    def sample(self, request):
        result = super().sample(request)
        if self.probed is None:
            import psutil

            workers = set(self.client.run(_os.getpid).values())
            nannies = {psutil.Process(p).ppid() for p in workers}
            self.probed = {pid: _listening(pid) for pid in {_os.getpid(), *workers, *nannies}}
            self.workers = workers
            self.http = {(ip, port): _answers_http(ip, port)
                         for socks in self.probed.values() for ip, port in socks}
            ss = _subprocess.run(["ss", "-ltnp"], capture_output=True, text=True).stdout
            ours = [line for line in ss.splitlines()
                    if any(f"pid={pid}," in line for pid in self.probed)]
            print("ss -ltnp during the run, this run's processes:\n" + "\n".join(ours))
        return result


@_pytest.mark.timeout(180)
def test_case5_default_dask_sampler_opens_no_http_port(tmp_path):
    """Every listening socket of the scheduler (this process), the nannies and the workers is
    on 127.0.0.1, and none answers HTTP (once 127.0.0.1:8787 and a port per worker did)."""
    sampler = _ProbingDaskSampler()
    h = _run_3(_fm.sleepy, sampler, tmp_path / "dash.db", n=50, gens=1)
    assert h.n_populations == 1
    probed = sampler.probed
    assert len(sampler.workers) >= 1 and len(probed) >= 3, probed
    sockets = [(pid, ip, port) for pid, socks in probed.items() for ip, port in socks]
    assert len(sockets) >= 1 + 2 * len(sampler.workers), probed  # scheduler, nannies, workers
    assert all(ip == "127.0.0.1" for _, ip, _ in sockets), sockets
    dashboards = [k for k, v in sampler.http.items() if v.startswith(b"HTTP/")]
    assert not dashboards, sampler.http


@_pytest.mark.timeout(30)
def test_case5_dashboard_only_on_loopback_when_asked():
    from dabc.samplers.dask import _loopback

    assert _loopback(":8787", "dashboard_address") == "127.0.0.1:8787"
    assert _loopback("127.0.0.1:0", "dashboard_address") == "127.0.0.1:0"
    for bad in ("0.0.0.0:8787", "10.1.2.3:8787", "example.org:8787"):
        with _pytest.raises(ValueError, match="loopback|every interface"):
            _loopback(bad, "dashboard_address")


def _rss_to(conn) -> None:
    conn.send(int(open("/proc/self/statm").read().split()[1]) * _os.sysconf("SC_PAGE_SIZE"))
    conn.close()


def _forked_child_rss() -> int:
    """Resident bytes of a child forked from this process, read at once (as a new worker)."""
    ctx = _mp.get_context("fork")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_rss_to, args=(child,))
    proc.start()
    try:
        return parent.recv()
    finally:
        proc.join(10)


@_pytest.mark.timeout(90)
def test_case13_workers_are_recycled_with_identical_results(tmp_path, caplog):
    """A model keeping 1 MB per call: workers recycled by task count and by memory give
    the same populations, bit for bit, as a run without recycling."""
    caplog.set_level("INFO", logger="dabc.samplers")
    with _dabc.MulticoreEvalParallelSampler(2) as plain:
        ref = _snapshot(_run_3(_fm.leaky, plain, tmp_path / "plain.db", n=200, gens=2))
    rss = _forked_child_rss()  # a fresh worker's resident memory (below this process's:
    # file-backed pages such as loaded libraries are not resident in a child until touched)
    limits = [{"max_tasks_per_worker": 3},
              {"max_worker_memory": f"{(rss + 100 * 2**20) / 1e6:.0f}MB"}]
    for i, limit in enumerate(limits):
        caplog.clear()
        with _dabc.MulticoreEvalParallelSampler(2, **limit) as sampler:
            got = _snapshot(_run_3(_fm.leaky, sampler, tmp_path / f"r{i}.db", n=200, gens=2))
        _assert_same(got, ref)
        msgs = [r.getMessage() for r in caplog.records if r.levelname == "INFO"
                and r.getMessage().startswith("recycling worker process")]
        assert len(msgs) >= 2, (limit, msgs)
        assert ("max_tasks_per_worker=3" if i == 0 else "above max_worker_memory") in msgs[0]
        assert not any("died" in r.getMessage() for r in caplog.records)


@_pytest.mark.timeout(30)
def test_case13_bad_recycling_arguments_are_refused():
    with _pytest.raises(ValueError, match="max_worker_memory"):
        _dabc.MulticoreEvalParallelSampler(1, max_worker_memory="lots")
    with _pytest.raises(ValueError, match="max_tasks_per_worker"):
        _dabc.MulticoreEvalParallelSampler(1, max_tasks_per_worker=0)
    with _pytest.raises(ValueError, match="simulation_timeout"):
        _dabc.MulticoreEvalParallelSampler(1, simulation_timeout=-1)


# --- case 3 on Redis: the limit travels, signed, with the work to `dabc redis-worker` ---
@_pytest.mark.timeout(120)
def test_case3_redis_simulation_timeout_fails_the_hung_evaluations(redis16, tmp_path,
                                                                   tmp_path_factory):
    """A Redis worker interrupts a hung simulation after simulation_timeout (SIGALRM in the
    worker process): the run finishes with the same populations as on one core with the same
    limit. Before, the worker held its claim forever and the generation never ended."""
    server = redis16.server()
    redis16.workers(server, 2)
    _tr.wait_registered(server, 2)
    t0 = _time.monotonic()
    h = _run_3(_fm.hangs_1_in_1000, _tr.sampler_for(server, simulation_timeout=_C3_TIMEOUT),
               tmp_path / "redis.db")
    assert h.n_populations == 2
    assert _time.monotonic() - t0 < 60
    _assert_same(_snapshot(h), _c3_reference(tmp_path_factory))
