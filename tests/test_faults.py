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


@_pytest.mark.slow
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
