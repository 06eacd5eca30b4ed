"""The dashboard's data functions and its security rules, without a browser (issue 13, 4-5).

The data functions read real runs of dabc.ABCSMC (tests/viz_runs.py) and are checked
against History's own numbers and against the weighted sample itself. The security rules
are checked with real HTTP on 127.0.0.1 (a threaded werkzeug server on a free port, in this
process, or the ``dabc dashboard`` command in a subprocess): 401 without the token on every
kind of path, the cookie and Bearer ways in, and the rule that ``--no-token`` needs a
loopback address (checked without ever binding to another address). The browser test is
tests/test_dashboard_browser.py.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import requests
import sqlalchemy as sa

import dabc
from dabc.cli.main import main
from dabc.errors import InputError
from dabc.viz import dashboard, dashboard_data
from dabc.viz.weighted import effective_sample_size, weighted_kde_1d

sys.path.insert(0, str(Path(__file__).parent))
import viz_runs  # noqa: E402

TOKEN = "a-test-token-of-some-length"


@pytest.fixture(scope="module")
def db(tmp_path_factory) -> str:
    """One database with a one-model run (id 1) and a two-model run (id 2)."""
    path = tmp_path_factory.mktemp("dash") / "runs.db"
    url = f"sqlite:///{path}"
    viz_runs.one_model_run(url, population=200, generations=4)
    viz_runs.two_model_run(url, population=200, generations=3)
    return str(path)


@pytest.fixture(autouse=True)
def _fresh_caches():
    dashboard_data.clear_caches()
    yield
    dashboard_data.clear_caches()


def _history(db: str, run: int) -> dabc.History:
    return dabc.History(f"sqlite:///{db}", run_id=run)


# -- data ------------------------------------------------------------------------------------
def test_runs_table_is_history_all_runs_plus_live_rows(db):
    rows = dashboard_data.runs_table(db)
    frame = _history(db, 1).all_runs()
    assert [r["id"] for r in rows] == [1, 2]
    for r, (_, f) in zip(rows, frame.iterrows(), strict=True):
        assert r["status"] == f["status"] == "done"
        assert r["generations"] == f["generations"]
        assert r["simulations"] == f["simulations"]
        assert r["stop_reason"] == f["stop_reason"]
        assert r["alive"] is False
    assert [r["generations"] for r in rows] == [4, 3]
    assert rows[1]["models"] == ["narrow", "wide"]
    assert rows[0]["t"] == 3 and rows[0]["live"]["needed"] == 200


def test_runs_table_and_live_states_take_one_query_each(db):
    h = dashboard_data.open_database(db)
    dashboard_data.runs_table(db)  # the first also asks once whether the live tables exist
    statements = []
    sa.event.listen(h.engine, "before_cursor_execute",
                    lambda *args, **kw: statements.append(args[2]))
    dashboard_data.runs_table(db)
    assert len(statements) == 2, statements
    statements.clear()
    dashboard_data.live_panel(db, 1)  # a run's view shares that answer: one query
    assert len(statements) == 1, statements


def test_series_are_history_numbers(db):
    for run in (1, 2):
        s = dashboard_data.series(db, run)
        g = _history(db, run).get_all_populations()
        assert s["t"] == g["t"].tolist()
        assert s["epsilon"] == g["epsilon"].tolist()
        assert s["samples"] == g["n_simulations"].tolist()
        assert s["ess"] == g["ess"].tolist()
        assert s["acceptance_rate"] == g["acceptance_rate"].tolist()
    probs = _history(db, 2).get_model_probabilities()
    p = dashboard_data.model_probabilities(db, 2)
    assert p["models"] == ["narrow", "wide"]
    assert p["probabilities"] == [probs.iloc[:, 0].tolist(), probs.iloc[:, 1].tolist()]
    assert np.allclose(np.sum(p["probabilities"], axis=0), 1.0)


def test_marginals_are_densities_of_the_weighted_sample(db):
    h = _history(db, 1)
    for t in (0, 3):
        d = dashboard_data.marginals(db, 1, t)
        params, w = h.get_distribution(m=0, t=t)
        w = np.asarray(w) / np.sum(w)
        assert d["n"] == len(w) == 200
        assert d["ess"] == pytest.approx(effective_sample_size(w))
        assert set(d["params"]) == {"mu", "sigma"}
        for name, v in d["params"].items():
            x, dens = np.array(v["x"]), np.array(v["density"])
            # the grid spans the sample plus three bandwidths: at most ~0.3 % mass outside
            assert np.trapezoid(dens, x) == pytest.approx(1.0, abs=0.01)
            mean = float(w @ params[name].to_numpy())
            assert v["mean"] == pytest.approx(mean)
            # the density's mean is the sample's (a Gaussian kernel keeps the mean)
            assert np.trapezoid(x * dens, x) / np.trapezoid(dens, x) == pytest.approx(
                mean, abs=0.02 * (x[-1] - x[0]))


def test_pair_densities_integrate_to_one_and_keep_the_weighted_means(db):
    params, w = _history(db, 1).get_distribution(m=0, t=3)
    w = np.asarray(w) / np.sum(w)
    means = [float(w @ params[n].to_numpy()) for n in ("mu", "sigma")]
    # 200 particles: a kernel estimate ("auto"); a histogram when asked (or above 5,000)
    assert dashboard_data.pair(db, 1, 3, "mu", "sigma")["method"] == "kde"
    for method in ("kde", "histogram"):
        d = dashboard_data.pair(db, 1, 3, "mu", "sigma", bins=40, method=method)
        assert d["method"] == method
        x, y, dens = np.array(d["x"]), np.array(d["y"]), np.array(d["density"])
        assert dens.shape == (40, 40)
        dx, dy = x[1] - x[0], y[1] - y[0]
        if method == "histogram":
            assert dens.sum() * dx * dy == pytest.approx(1.0, rel=1e-9)
        else:  # the grid spans three bandwidths beyond the sample: little mass outside
            assert np.trapezoid(np.trapezoid(dens, x, axis=1), y) == pytest.approx(1.0,
                                                                               abs=0.02)
        mass = dens.sum() * dx * dy
        mean_x = float((dens.sum(axis=0) * dx * dy) @ x) / mass  # rows are y, columns x
        mean_y = float((dens.sum(axis=1) * dx * dy) @ y) / mass
        # binning moves a value by at most half a bin; a Gaussian kernel keeps the mean
        assert mean_x == pytest.approx(means[0], abs=dx / 2)
        assert mean_y == pytest.approx(means[1], abs=dy / 2)
    with pytest.raises(InputError, match="'nope' is not a parameter of model 0"):
        dashboard_data.pair(db, 1, 3, "mu", "nope")
    with pytest.raises(InputError, match="no stored generation 9"):
        dashboard_data.marginals(db, 1, 9)


def test_a_large_sample_is_binned_first_with_the_particles_bandwidth():
    rng = np.random.default_rng(4)
    n = 100_000  # above BIN_ABOVE: the binned path
    x = np.concatenate([rng.normal(0, 1, 70_000), rng.normal(3, 0.3, 30_000)])
    w = rng.random(n) ** 3  # uneven weights: the ESS (and bandwidth) is well below n
    w /= w.sum()
    assert n > dashboard_data.BIN_ABOVE
    grid, dens = dashboard_data.marginal_density(x, w)
    direct_grid, direct = weighted_kde_1d(x, w)
    # the same grid up to the bandwidth's change (the binned sample's sd, a 1e-4 effect)
    assert np.allclose(grid, direct_grid, atol=1e-4 * np.ptp(grid))
    # linear binning on 1,024 points: an error of order (bin width / bandwidth) ** 2
    assert np.max(np.abs(np.interp(direct_grid, grid, dens) - direct)) < 1e-3 * direct.max()
    # with the bins' own ESS (about the number of bins) the bandwidth would be far off
    small, small_w = x[:500], w[:500] / w[:500].sum()
    assert np.array_equal(dashboard_data.marginal_density(small, small_w)[1],
                          weighted_kde_1d(small, small_w)[1])  # small: the direct path


def test_warming_a_generation_fills_the_cache_from_a_thread(db):
    dashboard_data.warm(db, 1, 2)
    deadline = time.monotonic() + 30
    while dashboard_data.cache_info()["size"] < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert dashboard_data.cache_info() == {"hits": 0, "misses": 2, "size": 2}
    dashboard_data.marginals(db, 1, 2)
    dashboard_data.pair(db, 1, 2, "mu", "sigma")
    assert dashboard_data.cache_info()["hits"] == 2


def test_a_stored_generation_is_read_once_then_served_from_the_cache(db):
    h = dashboard_data.open_database(db)
    statements = []
    sa.event.listen(h.engine, "before_cursor_execute",
                    lambda *args, **kw: statements.append(args[2]))
    first = dashboard_data.marginals(db, 2, 1, m=1)
    reads = len(statements)
    assert reads >= 1 and dashboard_data.cache_info()["misses"] == 1
    again = dashboard_data.marginals(db, 2, 1, m=1)
    assert again is first and len(statements) == reads  # no query at all
    assert dashboard_data.cache_info()["hits"] == 1
    # the series: read again only when the number of stored generations changed
    dashboard_data.series(db, 2, generations=3)
    n = len(statements)
    dashboard_data.series(db, 2, generations=3)
    assert len(statements) == n
    dashboard_data.series(db, 2, generations=4)  # "a new generation": read again
    assert len(statements) > n


def test_live_panel_numbers_come_from_the_live_row(db):
    state = _history(db, 1).live_state(1)
    p = dashboard_data.live_panel(db, 1)
    assert p["t"] == 3 and p["accepted"] == p["needed"] == 200
    assert p["acceptance_rate"] == pytest.approx(state["accepted"] / state["evaluations"])
    elapsed = (state["updated"] - state["generation_started"]).total_seconds()
    assert p["elapsed"] == pytest.approx(elapsed)
    assert p["workers_busy"] == pytest.approx(state["worker_seconds"] / elapsed)
    assert p["remaining"] == 0.0  # the generation is complete
    assert 0 < p["workers_busy"] <= 1.5  # one single-core sampler


def test_a_missing_database_is_not_created(tmp_path):
    missing = tmp_path / "nothing.db"
    with pytest.raises(InputError, match="does not exist \\(the dashboard never creates one\\)"):
        dashboard_data.open_database(missing)
    with pytest.raises(InputError, match="does not exist"):
        dashboard.make_app(missing, token=TOKEN)
    assert not missing.exists()
    other = tmp_path / "other.db"
    sa.create_engine(f"sqlite:///{other}").connect().exec_driver_sql(
        "CREATE TABLE t (x)").close()
    with pytest.raises(InputError, match="is not a dabc database"):
        dashboard_data.open_database(other)


# -- HTTP ------------------------------------------------------------------------------------
@pytest.fixture
def server(db):
    srv = dashboard.start(db, port=0, token=TOKEN)
    yield srv
    srv.stop()


def _callback(output: str, prop: str, inputs: list, state: list | None = None,
              changed: list | None = None) -> dict:
    """The body Dash's renderer posts to /_dash-update-component for one output."""
    return {"output": f"{output}.{prop}", "outputs": {"id": output, "property": prop},
            "inputs": [{"id": i, "property": p, "value": v} for i, p, v in inputs],
            "state": [{"id": i, "property": p, "value": v} for i, p, v in state or []],
            "changedPropIds": changed or [f"{i}.{p}" for i, p, _ in inputs[:1]]}


STEER = _callback("steer-message", "children",
                  [("stop", "n_clicks", 1), ("apply-rules", "n_clicks", None)],
                  [("max-generations", "value", None), ("minimum-epsilon", "value", None),
                   ("max-simulations", "value", None), ("run-id", "data", 1)],
                  changed=["stop.n_clicks"])


def _asset(server) -> str:
    html = requests.get(server.base + "/", headers={"Authorization": f"Bearer {TOKEN}"},
                        timeout=10).text
    paths = re.findall(r'src="(/_dash-component-suites/[^"]+)"', html)
    assert paths, html[:2000]
    return paths[0]


def test_every_request_without_the_token_gets_401(server, db):
    base = server.base
    asset = _asset(server)
    cases = [("GET", "/", None), ("GET", "/run/1", None), ("GET", asset, None),
             ("GET", "/_dash-layout", None), ("GET", "/_dash-dependencies", None),
             ("GET", "/no/such/page", None), ("HEAD", "/", None), ("OPTIONS", "/", None),
             ("OPTIONS", "/_dash-update-component", None),
             ("POST", "/_dash-update-component",
              _callback("page", "children", [("url", "pathname", "/")])),
             ("POST", "/_dash-update-component", STEER)]
    for method, path, body in cases:
        for headers in ({}, {"Authorization": "Bearer wrong-token-xxxxxxxx"},
                        {"Authorization": f"Basic {TOKEN}"},
                        {"Cookie": f"{dashboard._cookie_name(TOKEN)}=wrong"}):
            r = requests.request(method, base + path, json=body, headers=headers, timeout=10,
                                 allow_redirects=False)
            assert r.status_code == 401, (method, path, headers, r.status_code)
            assert method == "HEAD" or "needs its token" in r.text and TOKEN not in r.text
    r = requests.get(base + "/?token=wrong-token-xxxxxxx", allow_redirects=False, timeout=10)
    assert r.status_code == 401 and "set-cookie" not in r.headers
    # nothing was requested of the run (the steering POSTs never reached it)
    assert dashboard_data.events(db, 1) == []


def test_the_token_in_the_url_sets_a_strict_cookie_and_is_dropped(server):
    s = requests.Session()
    r = s.get(server.url.replace("/?", "/run/2?") + "&x=1", allow_redirects=False, timeout=10)
    assert r.status_code == 303
    assert r.headers["Location"] == "/run/2?x=1"  # the token is gone from the address
    cookie = r.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and TOKEN in cookie
    r = s.get(server.base + r.headers["Location"], timeout=10)
    assert r.status_code == 200 and "react-entry-point" in r.text
    r = requests.get(server.base + "//evil.example/?token=" + TOKEN, allow_redirects=False,
                     timeout=10)
    assert r.headers["Location"] == "/evil.example/"  # a path on this host, not a host
    asset = _asset(server)
    assert s.get(server.base + asset, timeout=10).status_code == 200
    r = s.post(server.base + "/_dash-update-component", timeout=10,
               json=_callback("page", "children", [("url", "pathname", "/")]))
    assert r.status_code == 200 and "runs-table" in r.text


def test_a_bearer_token_opens_every_path_including_the_steering_callback(server):
    auth = {"Authorization": f"Bearer {TOKEN}"}
    assert requests.get(server.base + "/", headers=auth, timeout=10).status_code == 200
    r = requests.get(server.base + _asset(server), headers=auth, timeout=10)
    assert r.status_code == 200 and len(r.content) > 1000
    r = requests.post(server.base + "/_dash-update-component", json=STEER, headers=auth,
                      timeout=10)
    # the request reached the steering callback: run 1 has ended, so it is refused there
    assert r.status_code == 200, r.text[:500]
    assert "is not running (status 'done'" in r.text


def test_no_token_needs_a_loopback_address():
    for host in ("127.0.0.1", "127.8.9.1", "::1", "[::1]", "localhost"):
        assert dashboard.is_loopback(host), host
        dashboard.check_bind(host, no_token=True)
    for host in ("0.0.0.0", "::", "192.0.2.7", "10.1.2.3", "2001:db8::1",
                 "no-such-host.invalid"):
        assert not dashboard.is_loopback(host), host
        with pytest.raises(InputError, match="--no-token is allowed only on a loopback"):
            dashboard.check_bind(host, no_token=True)
        dashboard.check_bind(host, no_token=False)  # with a token: allowed


def test_start_refuses_no_token_on_another_address_before_binding(db):
    # check_bind runs first: no socket is ever opened on 0.0.0.0
    with pytest.raises(InputError, match="--no-token is allowed only on a loopback"):
        dashboard.start(db, host="0.0.0.0", port=0, no_token=True)


def test_no_token_on_loopback_serves_without_a_token_and_warns(db, caplog):
    srv = dashboard.start(db, port=0, no_token=True)
    try:
        assert srv.token is None and "token" not in srv.url
        assert requests.get(srv.url, timeout=10).status_code == 200
    finally:
        srv.stop()
    assert any("without a token" in r.getMessage() for r in caplog.records
               if r.levelname == "WARNING")


def test_tokens_from_a_file_the_environment_or_random(tmp_path, monkeypatch):
    monkeypatch.delenv(dashboard.TOKEN_ENV, raising=False)
    token, generated = dashboard.read_token()
    other, _ = dashboard.read_token()
    assert generated and len(token) >= 40 and token != other
    monkeypatch.setenv(dashboard.TOKEN_ENV, "from-the-environment")
    assert dashboard.read_token() == ("from-the-environment", False)
    f = tmp_path / "token.txt"
    f.write_text("from-a-file-123\nignored\n")
    assert dashboard.read_token(token_file=f) == ("from-a-file-123", False)
    with pytest.raises(InputError, match="Cannot read the token file"):
        dashboard.read_token(token_file=tmp_path / "missing.txt")
    f.write_text("short\n")
    with pytest.raises(InputError, match="too short"):
        dashboard.read_token(token_file=f)
    with pytest.raises(InputError, match="cannot be combined"):
        dashboard.read_token(token_file=f, no_token=True)
    assert dashboard.read_token(no_token=True) == (None, False)


# -- the command -----------------------------------------------------------------------------
def _dabc() -> str:
    exe = Path(sys.executable).parent / "dabc"
    found = str(exe) if exe.exists() else shutil.which("dabc")
    assert found, "the 'dabc' console script is not installed (pip install -e '.[test]')"
    return found


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_cli(*args, env=None) -> tuple[subprocess.Popen, str]:
    """``dabc dashboard ...`` in a subprocess; returns it and its first stderr line."""
    proc = subprocess.Popen([_dabc(), "dashboard", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **(env or {})})
    line = proc.stderr.readline()
    return proc, line


def _end(proc: subprocess.Popen) -> tuple[str, str, int]:
    proc.send_signal(signal.SIGINT)  # Ctrl-C: the command ends normally
    out, err = proc.communicate(timeout=30)
    return out, err, proc.returncode


@pytest.mark.timeout(60)
def test_the_random_token_is_printed_once_with_the_url(db, monkeypatch):
    monkeypatch.delenv(dashboard.TOKEN_ENV, raising=False)
    port = _free_port()
    proc, line = _start_cli(db, "--port", port)
    try:
        match = re.search(rf"(http://127\.0\.0\.1:{port}/\?token=(\S+))", line)
        assert match, line
        url, token = match.groups()
        assert len(token) >= 40
        s = requests.Session()
        assert s.get(url, timeout=10).status_code == 200  # redirect, cookie, page
        assert requests.get(url.split("?")[0], timeout=10).status_code == 401
    finally:
        out, err, code = _end(proc)
    assert code == 0, err
    assert (line + err + out).count(token) == 1  # once, and not in any request log line


@pytest.mark.timeout(60)
def test_the_command_reads_the_token_from_a_file(db, tmp_path):
    f = tmp_path / "token.txt"
    f.write_text(TOKEN + "\n")
    port = _free_port()
    proc, line = _start_cli(db, "--port", port, "--token-file", f, "--run", 2)
    try:
        assert f"http://127.0.0.1:{port}/run/2 " in line and TOKEN not in line
        r = requests.get(f"http://127.0.0.1:{port}/run/2",
                         headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
        assert r.status_code == 200
    finally:
        _, err, code = _end(proc)
    assert code == 0 and TOKEN not in err


def test_the_command_errors_say_what_to_do(db, tmp_path, capsys):
    def dabc_main(*args) -> tuple[int, str]:
        code = main(["dashboard", *map(str, args)])
        return code, capsys.readouterr().err

    missing = tmp_path / "none.db"
    code, err = dabc_main(missing)
    assert code == 1 and "does not exist (the dashboard never creates one)" in err
    assert not missing.exists()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, err = dabc_main(db, "--port", port)
    assert code == 1, err
    assert f"Port {port} on 127.0.0.1 is in use" in err and "--port" in err
    code, err = dabc_main(db, "--host", "0.0.0.0", "--no-token")
    assert code == 1 and "--no-token is allowed only on a loopback" in err
    code, err = dabc_main(db, "--run", 7, "--port", 0)
    assert code == 1 and "No run with id 7" in err
    code, err = dabc_main(db, "--host", "no-such-host.invalid")
    assert code == 1 and "Cannot listen on 'no-such-host.invalid'" in err
    # no --token: a command line is visible to every user (ps); not even as an abbreviation
    code, err = dabc_main(db, "--token", TOKEN)
    assert code == 2 and "unrecognized arguments: --token" in err


# -- steering through the page's callback, on real runs -------------------------------------
def _sleepy(p, rng):
    time.sleep(0.003)
    return {"y": p["theta"] + 0.5 * rng.standard_normal()}


class _Run:
    """A real run in a daemon thread (StopGuard installs no signal handlers there)."""

    def __init__(self, db: Path, **kwargs):
        abc = dabc.ABCSMC(_sleepy, dabc.Prior(theta=dabc.RV("uniform", 0, 4)),
                          population_size=40, sampler=dabc.SingleCoreSampler(), seed=9,
                          epsilon=dabc.ConstantEpsilon(1.0), progress=False)
        self.result, self.error = None, None

        def target():
            try:
                self.result = abc.run({"y": 2.0}, db=f"sqlite:///{db}", **kwargs)
            except BaseException as exc:  # noqa: BLE001 - handed to the test
                self.error = exc

        self.thread = threading.Thread(target=target, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                h = dabc.History(f"sqlite:///{db}")
                if h.id is not None and h.max_t >= 0 and (h.live_state() or {}).get("alive"):
                    return
            except InputError:
                pass
            time.sleep(0.05)
        raise AssertionError("the run did not start")

    def join(self) -> dabc.History:
        self.thread.join(60)
        assert not self.thread.is_alive(), "the run did not end"
        if self.error is not None:
            raise self.error
        return self.result


def _text(r: requests.Response) -> str:
    """A callback's response decoded (Dash escapes <, > and & in its JSON)."""
    return json.dumps(r.json(), ensure_ascii=False)


def _rules(max_gen=None, min_eps=None, max_sims=None) -> dict:
    return _callback("steer-message", "children",
                     [("stop", "n_clicks", None), ("apply-rules", "n_clicks", 1)],
                     [("max-generations", "value", max_gen),
                      ("minimum-epsilon", "value", min_eps),
                      ("max-simulations", "value", max_sims), ("run-id", "data", 1)],
                     changed=["apply-rules.n_clicks"])


@pytest.mark.timeout(120)
def test_the_rule_inputs_change_a_running_runs_stopping_rules(tmp_path):
    db = tmp_path / "steer.db"
    run = _Run(db, max_generations=200, steering=True)
    srv = dashboard.start(db, port=0, token=TOKEN)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    try:
        u = dashboard.run_update(str(db), 1, None, None, None)
        assert u["alive"] and u["steerable"] and u["note"] == ""
        assert u["rules"]["max_generations"] == 200
        r = requests.post(srv.base + "/_dash-update-component", headers=auth, timeout=30,
                          json=_rules())
        assert r.status_code == 200 and "Enter a new value for a rule first" in _text(r)
        r = requests.post(srv.base + "/_dash-update-component", headers=auth, timeout=30,
                          json=_rules(max_gen=0))
        assert "max_generations must be a whole number >= 1, not 0" in _text(r)
        stored = dabc.History(f"sqlite:///{db}").max_t + 1
        target = stored + 5  # ~0.3 s per generation: applied well before that
        r = requests.post(srv.base + "/_dash-update-component", headers=auth, timeout=30,
                          json=_rules(max_gen=target, min_eps=0.0001))
        assert r.status_code == 200
        assert f"Requested max_generations = {target} (request 1), minimum_epsilon = " \
            "0.0001 (request 2)" in _text(r)
        h = run.join()
    finally:
        srv.stop()
        if run.thread.is_alive():
            dabc.History(f"sqlite:///{db}").request_control("stop", source="test cleanup")
            run.thread.join(30)
    assert h.n_populations == target  # the new limit ended the run, long before 200
    log = h.events()
    assert list(log["source"]) == ["dashboard 127.0.0.1"] * 2
    assert list(log["outcome"]) == [f"max_generations 200 -> {target}",
                                    "minimum_epsilon 0 -> 0.0001"]
    row = h.all_runs().set_index("id").loc[1]
    assert row["stop_reason"] == f"max_generations={target} reached"
    after = dashboard.run_update(str(db), 1, None, None, None)
    assert not after["alive"] and "cannot be steered" in after["note"]
    assert after["slider"]["max"] == target - 1 and len(after["figures"]) == 5


@pytest.mark.timeout(120)
def test_a_run_without_steering_gets_disabled_rule_inputs_but_can_be_stopped(tmp_path):
    db = tmp_path / "fixed.db"
    run = _Run(db, max_generations=200, steering=False)
    srv = dashboard.start(db, port=0, token=TOKEN)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    try:
        u = dashboard.run_update(str(db), 1, None, None, None)
        assert u["alive"] and not u["steerable"] and "steering=False" in u["note"]
        # the page's outputs: stop enabled, apply and the three inputs disabled
        body = _callback("live", "children", [("tick", "n_intervals", 1),
                                              ("run-id", "data", 1)],
                         [("seen", "data", None), ("generation", "value", None),
                          ("generation", "max", None)])
        outs = [o.split(".") for o in (
            "live.children", "events.children", "stop.disabled", "apply-rules.disabled",
            "max-generations.disabled", "minimum-epsilon.disabled",
            "max-simulations.disabled")]
        key = next(k for k in srv.app.callback_map if k.startswith("..live.children"))
        parts = [p.rsplit(".", 1) for p in key.strip(".").split("...")]
        body.update(output=key, outputs=[{"id": i, "property": p} for i, p in parts])
        r = requests.post(srv.base + "/_dash-update-component", headers=auth, timeout=30,
                          json=body)
        assert r.status_code == 200, r.text[:300]
        resp = r.json()["response"]
        for (i, prop), want in zip(outs[2:], [False, True, True, True, True], strict=True):
            assert resp[i][prop] is want, (i, prop, resp[i])
        r = requests.post(srv.base + "/_dash-update-component", headers=auth, timeout=30,
                          json=_rules(max_gen=3))
        assert "does not permit changing its stopping rules" in _text(r)
        r = requests.post(srv.base + "/_dash-update-component", headers=auth, timeout=30,
                          json=STEER)
        assert "Requested stop (request 1)" in _text(r)
        h = run.join()
    finally:
        srv.stop()
        if run.thread.is_alive():
            dabc.History(f"sqlite:///{db}").request_control("stop", source="test cleanup")
            run.thread.join(30)
    assert list(h.events()["action"]) == ["stop"]  # the refused change was never recorded
    assert h.all_runs().set_index("id").loc[1]["stop_reason"] == \
        f"stopped from dashboard 127.0.0.1 after generation {h.max_t}"


# -- passwords -------------------------------------------------------------------------------
@pytest.mark.timeout(120)
def test_no_page_shows_the_database_password(pg_url):
    url = sa.engine.make_url(pg_url)
    if not url.password:
        pytest.skip("the PostgreSQL test URL has no password to hide (DABC_TEST_POSTGRES_URL "
                    "without one)")
    viz_runs.one_model_run(pg_url, population=50, generations=2)
    secret = f":{url.password}@"
    srv = dashboard.start(pg_url, port=0, token=TOKEN)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    try:
        texts = [requests.get(srv.base + p, headers=auth, timeout=10).text
                 for p in ("/", "/run/1", "/_dash-layout")]
        for path in ("/", "/run/1"):
            texts.append(requests.post(
                srv.base + "/_dash-update-component", headers=auth, timeout=30,
                json=_callback("page", "children", [("url", "pathname", path)])).text)
        texts.append(requests.post(srv.base + "/_dash-update-component", headers=auth,
                                   timeout=30, json=STEER).text)  # an error message
    finally:
        srv.stop()
    shown = json.dumps(texts)
    assert secret not in shown
    assert "is not running (status 'done'" in texts[-1]  # a message naming the database
    assert f"{url.username}:***@" in texts[2]  # the header shows the URL, password hidden
