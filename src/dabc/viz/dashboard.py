"""The live web dashboard of a dabc database (``dabc dashboard DB``; the ``dashboard`` extra).

What it shows
-------------
A page listing the runs of one database (status, generations, simulations, stop reason,
the generation in progress) and, per run (``/run/<id>``): the generation in progress from
the master's live row (accepted/needed, evaluations, acceptance rate, workers busy on
average, the time to the end of the generation), the epsilon, simulation, ESS and
acceptance-rate series, the weighted posterior marginals and a pair histogram of any stored
generation (a slider), the model probabilities, the steering controls and the run's
steering log. A ``dcc.Interval`` asks for an update every second, so a new result shows
within two seconds, without a reload. It reads only the database
(:mod:`dabc.viz.dashboard_data`), so it works for a master on a cluster as long as the
database is reachable.

Steering
--------
"Stop after this generation" and new values of ``max_generations``, ``minimum_epsilon``
and ``max_total_simulations`` go through :meth:`History.request_control` with the source
``"dashboard <client address>"``; the master applies them after the generation in progress
and records the outcome in the log shown on the page. The controls are disabled when the
run is not alive, and the rule inputs when the run was started with ``steering=False``.

Security
--------
Every request needs the token, on every path (the pages, Dash's JavaScript under
``/_dash-component-suites/``, the callbacks under ``/_dash-update-component``, hence every
steering action): ``?token=...`` in the URL (answered with an HttpOnly, SameSite=Strict
cookie and a redirect that drops the token from the address bar), that cookie, or an
``Authorization: Bearer ...`` header; anything else gets 401. Tokens are compared with
:func:`hmac.compare_digest`. The token is the user's (``$DABC_DASHBOARD_TOKEN`` or a token
file, never a command-line argument, which other users can see in ``ps``) or a random one
(:func:`secrets.token_urlsafe`) written once to stderr with the URL. ``no_token=True`` is
refused unless the server binds to a loopback address. The request log never shows the
token, and no database password is shown anywhere (:func:`~dabc.storage.display_url`).

Everything is served locally (Dash's own JavaScript, no external stylesheet, font, MathJax
or map data), because cluster nodes often have no internet.
"""

from __future__ import annotations

import errno
import hashlib
import hmac
import ipaddress
import logging
import os
import re
import secrets
import socket
import sys
import threading
import urllib.parse
from typing import IO

from ..engine.progress import format_duration
from ..errors import InputError
from ..storage import database_url, display_url
from . import dashboard_data as data

__all__ = ["TOKEN_ENV", "DashboardServer", "check_bind", "is_loopback", "make_app",
           "read_token", "serve", "start"]

_log = logging.getLogger("dabc.viz")

TOKEN_ENV = "DABC_DASHBOARD_TOKEN"
"""The environment variable a token is read from (when no token file is given)."""

INSTALL_HINT = 'pip install "dabc[dashboard]"'
_RUN_PATH = re.compile(r"^/run/(\d+)/?$")
_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0;
       background: #f5f6f8; color: #1d2430; }
header { background: #1f3b5a; color: white; padding: 10px 20px; display: flex;
         align-items: baseline; gap: 24px; }
header h1 { font-size: 20px; margin: 0; }
header a { color: #cfe3ff; }
header .db { font-family: monospace; font-size: 13px; color: #cfe3ff; }
main { padding: 12px 20px; }
table { border-collapse: collapse; background: white; font-size: 14px; }
th, td { border-bottom: 1px solid #dde1e6; padding: 5px 10px; text-align: left; }
th { background: #eef1f5; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.status-running { color: #0a7d32; font-weight: 600; }
.status-interrupted, .status-failed { color: #b3261e; font-weight: 600; }
.card { background: white; border: 1px solid #dde1e6; border-radius: 6px; padding: 10px 14px;
        margin-bottom: 12px; }
.live { display: flex; flex-wrap: wrap; gap: 8px 28px; font-size: 15px; }
.live b { font-size: 20px; }
.steer { display: flex; flex-wrap: wrap; align-items: center; gap: 8px 16px; }
.steer input { width: 110px; }
.steer button { padding: 5px 12px; }
.msg { font-size: 13px; margin-top: 6px; }
.grid4 { display: grid; grid-template-columns: repeat(auto-fit, minmax(330px, 1fr));
         gap: 10px; margin-bottom: 12px; }
.grid2 { display: grid; grid-template-columns: 3fr 2fr; gap: 10px; }
.muted { color: #5f6b7a; font-size: 13px; }
h2 { font-size: 17px; margin: 4px 0 8px 0; }
"""
_INDEX = """<!DOCTYPE html>
<html>
    <head>
        {%metas%}
        <title>{%title%}</title>
        {%css%}
        <style>""" + _CSS + """</style>
    </head>
    <body>
        {%app_entry%}
        <footer>
            {%config%}
            {%scripts%}
            {%renderer%}
        </footer>
    </body>
</html>"""


# -- tokens and addresses --------------------------------------------------------------------
def is_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback address (``127.0.0.0/8``, ``::1``, ``localhost``).

    A name other than ``localhost`` counts only when every address it resolves to is a
    loopback one; a name that does not resolve is not loopback.

    Parameters
    ----------
    host : str
        An address or host name, as given to ``--host``.

    Returns
    -------
    bool
        True for a loopback address.

    Examples
    --------
    >>> is_loopback("127.0.0.1"), is_loopback("::1"), is_loopback("0.0.0.0")
    (True, True, False)
    """
    host = host.strip().strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    return bool(infos) and all(ipaddress.ip_address(i[4][0].split("%")[0]).is_loopback
                               for i in infos)


def check_bind(host: str, no_token: bool) -> None:
    """Refuse a dashboard without a token on an address others can reach.

    Parameters
    ----------
    host : str
        The address the server is to bind to.
    no_token : bool
        Whether it is to run without a token.

    Raises
    ------
    InputError
        When ``no_token`` and ``host`` is not a loopback address.

    Examples
    --------
    >>> check_bind("127.0.0.1", no_token=True)
    >>> check_bind("0.0.0.0", no_token=False)
    """
    if no_token and not is_loopback(host):
        raise InputError(f"--no-token is allowed only on a loopback address (127.0.0.1, ::1 "
                         f"or localhost), not on {host!r}: anyone who can reach {host} could "
                         "read the runs and stop them. Drop --no-token (a random token is "
                         f"then printed once), or give one in ${TOKEN_ENV} or --token-file.")


def read_token(token: str | None = None, token_file: str | os.PathLike[str] | None = None,
               no_token: bool = False) -> tuple[str | None, bool]:
    """The dashboard's token: given, from a file, from the environment, or a random one.

    Parameters
    ----------
    token : str, optional
        The token itself (from Python code; the command line offers only a file and the
        environment, because arguments are visible to other users in ``ps``).
    token_file : str or os.PathLike, optional
        A file whose first line is the token.
    no_token : bool, default False
        Run without a token (see :func:`check_bind`).

    Returns
    -------
    token : str or None
        None only with ``no_token``.
    generated : bool
        Whether the token is a new random one (to be shown to the user once).

    Raises
    ------
    InputError
        When the file cannot be read or a token is empty or shorter than 8 characters, or
        a token is given together with ``no_token``.

    Examples
    --------
    >>> token, generated = read_token()
    >>> generated and len(token) >= 32
    True
    """
    if no_token:
        if token is not None or token_file is not None:
            raise InputError("--no-token cannot be combined with a token (--token-file or "
                             "token=); give one or the other.")
        return None, False
    source = "token="
    if token is None and token_file is not None:
        try:
            with open(token_file, encoding="utf-8") as f:
                token = f.readline().strip()
        except OSError as exc:
            raise InputError(f"Cannot read the token file {os.fspath(token_file)!r}: "
                             f"{exc.strerror or exc}. Write the token on its first line, "
                             "e.g. python3 -c 'import secrets; print(secrets.token_urlsafe())'"
                             " > token.txt; chmod 600 token.txt.") from exc
        source = f"the token file {os.fspath(token_file)!r}"
    elif token is None and os.environ.get(TOKEN_ENV) is not None:
        token, source = os.environ[TOKEN_ENV].strip(), f"${TOKEN_ENV}"
    if token is None:
        return secrets.token_urlsafe(32), True
    if len(token) < 8:
        what = "empty" if not token else "too short"
        raise InputError(f"The dashboard token from {source} is {what}"
                         " (at least 8 characters); use a long random one, e.g. "
                         "python3 -c 'import secrets; print(secrets.token_urlsafe())'.")
    return token, False


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode("utf-8"), b.encode("utf-8"))


def _cookie_name(token: str) -> str:
    # per token, so two dashboards on one host (cookies ignore the port) keep their cookies
    return "dabc_dashboard_" + hashlib.sha256(token.encode("utf-8")).hexdigest()[:12]


def _install_auth(server, token: str | None) -> None:
    """The before_request check of every request (see the module docstring)."""
    import flask

    if token is None:
        return
    cookie = _cookie_name(token)

    @server.before_request
    def _check_token():
        req = flask.request
        given = req.args.get("token")
        if given is not None:
            if not _same(given, token):
                return _refuse()
            if req.method in ("GET", "HEAD"):
                rest = [(k, v) for k, v in req.args.items(multi=True) if k != "token"]
                path = "/" + req.path.lstrip("/")  # never "//host": no open redirect
                target = path + ("?" + urllib.parse.urlencode(rest) if rest else "")
                resp = flask.redirect(target, code=303)
                resp.set_cookie(cookie, token, httponly=True, samesite="Strict", path="/")
                resp.headers["Cache-Control"] = "no-store"
                resp.headers["Referrer-Policy"] = "no-referrer"
                return resp
            return None
        value = req.cookies.get(cookie)
        if value is not None and _same(value, token):
            return None
        auth = req.headers.get("Authorization", "")
        if auth[:7].lower() == "bearer " and _same(auth[7:].strip(), token):
            return None
        return _refuse()

    def _refuse():
        return flask.Response(
            "401 Unauthorized: this dabc dashboard needs its token. Open the URL that "
            "'dabc dashboard' printed (http://HOST:PORT/?token=...), or send the header "
            "'Authorization: Bearer <token>'.\n", status=401,
            headers={"WWW-Authenticate": 'Bearer realm="dabc dashboard"',
                     "Content-Type": "text/plain; charset=utf-8", "Cache-Control": "no-store"})


# -- figures (plain dicts: no plotly.py needed on the server, and fast) ------------------------
_BLUE, _COLOURS = "#1f77b4", ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
                              "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"]


def _layout(title: str, height: int = 250, n: int = 0, **extra) -> dict:
    """A figure's layout; ``n`` generations on the x axis (whole-number ticks)."""
    xaxis = {"title": {"text": "generation"}, "tick0": 0, "dtick": max(1, -(-n // 10))}
    return {"title": {"text": title, "font": {"size": 14}, "x": 0.02},
            "height": height, "margin": {"l": 55, "r": 15, "t": 35, "b": 40},
            "paper_bgcolor": "white", "plot_bgcolor": "#fbfcfd", "showlegend": False,
            "xaxis": xaxis, **extra}


def _series_figure(s: dict, key: str, title: str, log: bool = False) -> dict:
    ys = s[key]
    if log and any(v is not None and v <= 0 for v in ys):
        log = False
    layout = _layout(title, n=len(ys))
    if log:
        layout["yaxis"] = {"type": "log"}
    return {"data": [{"type": "scatter", "mode": "lines+markers", "x": s["t"], "y": ys,
                      "line": {"color": _BLUE}, "name": title}], "layout": layout}


def _probabilities_figure(p: dict) -> dict:
    traces = [{"type": "bar", "x": p["t"], "y": probs, "name": name,
               "marker": {"color": _COLOURS[i % len(_COLOURS)]}}
              for i, (name, probs) in enumerate(zip(p["models"], p["probabilities"],
                                                    strict=False))]
    return {"data": traces, "layout": _layout("Model probabilities", n=len(p["t"]),
                                              barmode="stack",
                                              showlegend=True, yaxis={"range": [0, 1]})}


def _empty_figure(text: str, height: int = 250) -> dict:
    return {"data": [], "layout": {**_layout("", height), "xaxis": {"visible": False},
                                   "yaxis": {"visible": False},
                                   "annotations": [{"text": text, "showarrow": False,
                                                    "xref": "paper", "yref": "paper",
                                                    "x": 0.5, "y": 0.5}]}}


def _marginals_figure(d: dict, model: str) -> dict:
    params = list(d["params"].items())
    if not params:
        return _empty_figure(f"model {model} has no particle in generation {d['t']}", 300)
    k = len(params)
    traces, layout = [], _layout(f"Posterior marginals, generation {d['t']} ({model}; "
                                 f"{d['n']:,} particles, ESS {d['ess']:,.0f})", 300)
    layout["grid"] = {"rows": 1, "columns": k, "pattern": "independent"}
    for i, (name, v) in enumerate(params, start=1):
        suffix = "" if i == 1 else str(i)
        traces.append({"type": "scatter", "mode": "lines", "x": v["x"], "y": v["density"],
                       "fill": "tozeroy", "line": {"color": _BLUE}, "name": name,
                       "xaxis": f"x{suffix}", "yaxis": f"y{suffix}"})
        layout[f"xaxis{suffix}"] = {"title": {"text": name}}
        layout[f"yaxis{suffix}"] = {"rangemode": "tozero"}
    layout["yaxis"] = {"rangemode": "tozero", "title": {"text": "density"}}
    return {"data": traces, "layout": layout}


def _pair_figure(d: dict) -> dict:
    x, y = d["names"]
    if not d["density"]:
        return _empty_figure("no particle in this generation", 300)
    what = "density" if d["method"] == "kde" else "histogram"
    return {"data": [{"type": "heatmap", "x": d["x"], "y": d["y"], "z": d["density"],
                      "colorscale": "Viridis", "colorbar": {"thickness": 10},
                      "zsmooth": "best" if d["method"] == "kde" else False}],
            "layout": {**_layout(f"{x} and {y}, generation {d['t']} ({what})", 300),
                       "xaxis": {"title": {"text": x}}, "yaxis": {"title": {"text": y}}}}


# -- page content ----------------------------------------------------------------------------
def _fmt(v, spec: str = ",") -> str:
    return "–" if v is None else format(v, spec)


def _el(kind: str, children=None, namespace: str = "dash_html_components", **props) -> dict:
    """A Dash component as the JSON the renderer reads (``{"type", "namespace", "props"}``).

    The runs table of a large database is sent every second; building it from these plain
    dicts instead of component objects makes its encoding several times faster (the JSON
    encoder's C path instead of a Python call per component).
    """
    if children is not None:
        props["children"] = children
    return {"type": kind, "namespace": namespace, "props": props}


def runs_rows(db: str) -> list:
    """The runs table's rows (the runs page's update), newest run first, as component dicts.

    Parameters
    ----------
    db : str
        The database.

    Returns
    -------
    list of dict
        A header row, then one ``Tr`` per run (id ``run-row-<id>``, with a link
        ``run-link-<id>`` to its page).

    Examples
    --------
    >>> rows = runs_rows("runs.db")                    # doctest: +SKIP
    >>> rows[1]["props"]["id"]                          # doctest: +SKIP
    'run-row-1'
    """
    head = _el("Tr", [_el("Th", c) for c in ("Run", "Status", "Generations", "Simulations",
                                             "In progress", "Stop reason")])
    rows = [head]
    for r in reversed(data.runs_table(db)):
        live = r["live"]
        progress = (f"generation {r['t']}: {live['accepted']:,}/{live['needed']:,} accepted"
                    if r["alive"] and live is not None else "")
        rid = r["id"]
        rows.append(_el("Tr", [
            _el("Td", _el("Link", f"run {rid}", "dash_core_components", href=f"/run/{rid}",
                          id=f"run-link-{rid}")),
            _el("Td", r["status"], className=f"status-{r['status']}"),
            _el("Td", f"{r['generations']:,}", className="num"),
            _el("Td", f"{r['simulations']:,}", className="num"),
            _el("Td", progress), _el("Td", r["stop_reason"])], id=f"run-row-{rid}"))
    if len(rows) == 1:
        rows.append(_el("Tr", _el("Td", "No run stored yet.", colSpan=6)))
    return rows


def _live_children(row: dict | None, panel: dict | None) -> list:
    from dash import html

    if row is None:
        return [html.Span("This run is not in the database.")]
    stored = html.Span(["stored generations ", html.B(f"{row['generations']:,}",
                                                      id="stored-generations")])
    if panel is None or not row["alive"]:
        reason = f": {row['stop_reason']}" if row["stop_reason"] else ""
        last = "" if panel is None else f" (its last generation in progress was {panel['t']})"
        return [html.Span(["status ", html.B(row["status"], id="run-status")]), stored,
                html.Span(f"ended{reason}{last}" if row["status"] != "running"
                          else "no live state from its master yet")]
    if row["generations"] > panel["t"]:
        # generation t is stored and the master's next snapshot (at most 0.5 s away) is not
        # written yet: the next generation is starting, its numbers are not known
        return [html.Span(["status ", html.B(row["status"], id="run-status")]),
                html.Span(["generation ", html.B(str(row["generations"]), id="live-generation"),
                           " starting"]), stored,
                html.Span("waiting for the master's first numbers of it", className="muted")]
    rate = panel["acceptance_rate"]
    busy = panel["workers_busy"]
    return [
        html.Span(["status ", html.B(row["status"], id="run-status")]),
        html.Span(["generation ", html.B(str(panel["t"]), id="live-generation"),
                   " in progress"]),
        stored,
        html.Span(["accepted ", html.B(f"{panel['accepted']:,}/{panel['needed']:,}",
                                       id="live-accepted")]),
        html.Span(["evaluations ", html.B(f"{panel['evaluations']:,}")]),
        html.Span(["acceptance rate ", html.B("–" if rate is None else f"{rate:.3f}")]),
        html.Span(["epsilon ", html.B(_fmt(panel["epsilon"], ".4g"))]),
        html.Span(["workers busy ", html.B("–" if busy is None else f"{busy:.1f}"),
                   html.Span(" (average over the generation)", className="muted")]),
        html.Span(["end of generation in about ", html.B(format_duration(panel["remaining"]))]),
    ]


def _events_rows(evs: list[dict]) -> list:
    from dash import html

    head = html.Tr([html.Th(c) for c in ("Requested (UTC)", "By", "Action", "Value",
                                         "Applied (UTC)", "Outcome")])
    rows = [head]
    for e in evs:
        rows.append(html.Tr([
            html.Td(f"{e['time']:%Y-%m-%d %H:%M:%S}" if e["time"] is not None else ""),
            html.Td(e["source"]), html.Td(e["action"]),
            html.Td("" if e["value"] is None else str(e["value"])),
            html.Td(f"{e['applied']:%H:%M:%S}" if e["applied"] is not None else "pending"),
            html.Td(e["outcome"] or "")]))
    if len(rows) == 1:
        rows.append(html.Tr(html.Td("No steering request yet.", colSpan=6)))
    return rows


def run_update(db: str, run_id: int, seen: int | None, slider_value: int | None,
               slider_max: int | None) -> dict:
    """Everything the run page's one-second update sends, as a dict of its outputs.

    Reads the runs and live rows (two queries) and the steering log (one); the series and
    figures only when the number of stored generations differs from ``seen`` (else
    ``None`` for them: "unchanged").

    Parameters
    ----------
    db : str
        The database.
    run_id : int
        The run.
    seen : int or None
        The number of stored generations the page shows now.
    slider_value, slider_max : int or None
        The generation slider's position and end (it follows the newest generation while it
        sits at the end).

    Returns
    -------
    dict
        ``live`` (children), ``events`` (rows), ``steerable`` (bool), ``alive`` (bool),
        ``note`` (text), ``rules`` (dict), ``generations``; and, when they changed,
        ``figures`` (epsilon, samples, ESS, acceptance rate, model probabilities),
        ``slider`` (max, value, marks).

    Examples
    --------
    >>> u = run_update("runs.db", 1, None, None, None)  # doctest: +SKIP
    >>> u["generations"], u["slider"]["value"]          # doctest: +SKIP
    (4, 3)
    """
    rows = {r["id"]: r for r in data.runs_table(db)}
    row = rows.get(int(run_id))
    state = None if row is None else row["live"]
    panel = None if state is None else data.live_panel(db, run_id, state)
    n = 0 if row is None else row["generations"]
    out = {"live": _live_children(row, panel), "generations": n,
           "events": _events_rows(data.events(db, run_id)),
           "alive": bool(row and row["alive"]),
           "steerable": bool(row and row["alive"] and state and state["steerable"]),
           "rules": {} if state is None else state["rules"], "figures": None, "slider": None}
    if row is None:
        out["note"] = f"There is no run {run_id} in this database."
    elif not out["alive"]:
        out["note"] = "The run is not running: it cannot be steered."
    elif not out["steerable"]:
        out["note"] = ("This run was started with steering=False: its stopping rules cannot "
                       "be changed here; it can still be stopped.")
    else:
        out["note"] = ""
    if n != seen and n > 0:
        s = data.series(db, run_id, n)
        p = data.model_probabilities(db, run_id, n)
        out["figures"] = [_series_figure(s, "epsilon", "Epsilon", log=True),
                          _series_figure(s, "samples", "Simulations per generation"),
                          _series_figure(s, "ess", "Effective sample size"),
                          _series_figure(s, "acceptance_rate", "Acceptance rate"),
                          _probabilities_figure(p)]
        last = n - 1
        for m in range(len(data.run_info(db, run_id)["models"])):
            data.warm(db, run_id, last, m)  # the slider follows: have its figures ready
        follow = slider_value is None or slider_max is None or slider_value >= slider_max
        step = max(1, n // 10)
        marks = {str(t): str(t) for t in range(0, n, step)}
        marks[str(last)] = str(last)
        out["slider"] = {"max": last, "value": last if follow else slider_value,
                         "marks": marks}
    return out


def posterior_update(db: str, run_id: int, t: int | None, m: int | None, x: str | None,
                     y: str | None) -> tuple[dict, dict]:
    """The marginals and pair figures of generation ``t`` (cached once computed).

    Parameters
    ----------
    db : str
        The database.
    run_id : int
        The run.
    t : int or None
        A stored generation (None: nothing stored yet).
    m : int or None
        The model (None: 0).
    x, y : str or None
        The pair's parameters (None: the model's first two).

    Returns
    -------
    tuple of dict
        The two plotly figures.

    Examples
    --------
    >>> marginals, pair = posterior_update("runs.db", 1, 3, 0, "mu", "sigma")  # doctest: +SKIP
    >>> pair["data"][0]["type"]                         # doctest: +SKIP
    'heatmap'
    """
    info = data.run_info(db, run_id)
    m = int(m or 0)
    if t is None:
        return _empty_figure("no generation stored yet", 300), _empty_figure("", 300)
    names = info["params"][m]
    model = info["models"][m]
    marg = _marginals_figure(data.marginals(db, run_id, int(t), m), model)
    if len(names) < 2:
        return marg, _empty_figure(f"model {model} has one parameter: no pair to show", 300)
    x = x if x in names else names[0]
    y = y if y in names and y != x else next(n for n in names if n != x)
    return marg, _pair_figure(data.pair(db, run_id, int(t), x, y, m))


def _runs_page(db: str):
    from dash import html

    return html.Main([html.H2("Runs"), html.Table(runs_rows(db), id="runs-table")])


def _run_page(db: str, run_id: int):
    from dash import dcc, html

    try:
        info = data.run_info(db, run_id)
    except InputError as exc:
        return html.Main([html.H2(f"Run {run_id}"), html.P(str(exc)),
                          dcc.Link("All runs", href="/")])
    models = info["models"]
    params0 = info["params"][0] if info["params"] else []
    number = {"type": "number", "debounce": True, "disabled": True}
    return html.Main([
        dcc.Store(id="run-id", data=run_id),
        dcc.Store(id="seen", data=None),
        html.H2(f"Run {run_id}: {', '.join(models)} (population {info['population_size']:,})"),
        html.Div(html.Div(_live_children(None, None), className="live", id="live"),
                 className="card"),
        html.Div([
            html.Div([
                html.Button("Stop after this generation", id="stop", disabled=True),
                html.Label(["max generations ", dcc.Input(id="max-generations", min=1,
                                                          step=1, **number)]),
                html.Label(["minimum epsilon ", dcc.Input(id="minimum-epsilon", min=0,
                                                          **number)]),
                html.Label(["max simulations ", dcc.Input(id="max-simulations", min=1,
                                                          step=1, **number)]),
                html.Button("Apply rules", id="apply-rules", disabled=True),
            ], className="steer"),
            html.Div(id="steer-note", className="msg muted"),
            html.Div(id="steer-message", className="msg"),
        ], className="card"),
        html.Div([dcc.Graph(id=g, config={"displaylogo": False, "responsive": True},
                            figure=_empty_figure("no generation stored yet"))
                  for g in ("epsilon-graph", "samples-graph", "ess-graph",
                            "acceptance-graph")], className="grid4"),
        html.Div([
            html.Div([
                html.Span("generation ", className="muted"),
                dcc.Slider(id="generation", min=0, max=0, step=1, value=None, marks=None,
                           disabled=False),
                html.Div([html.Span("model ", className="muted"),
                          dcc.Dropdown(id="model", clearable=False, value=0,
                                       options=[{"label": n, "value": i}
                                                for i, n in enumerate(models)])],
                         style={"display": "flex" if len(models) > 1 else "none",
                                "alignItems": "center", "gap": "8px", "width": "360px"}),
            ]),
            html.Div([
                dcc.Graph(id="marginals-graph", config={"displaylogo": False},
                          figure=_empty_figure("no generation stored yet", 300)),
                html.Div([
                    html.Div([dcc.Dropdown(id="pair-x", clearable=False,
                                           value=params0[0] if params0 else None,
                                           options=params0),
                              dcc.Dropdown(id="pair-y", clearable=False,
                                           value=params0[1] if len(params0) > 1 else None,
                                           options=params0)],
                             style={"display": "grid", "gridTemplateColumns": "1fr 1fr",
                                    "gap": "6px"}),
                    dcc.Graph(id="pair-graph", config={"displaylogo": False},
                              figure=_empty_figure("", 300))]),
            ], className="grid2"),
        ], className="card"),
        html.Div(dcc.Graph(id="probabilities-graph", config={"displaylogo": False},
                           figure=_empty_figure("no generation stored yet")),
                 className="card", style={"display": "block" if len(models) > 1 else "none"}),
        html.Div([html.H2("Steering log"), html.Table(_events_rows([]), id="events")],
                 className="card"),
    ])


# -- the app ---------------------------------------------------------------------------------
def make_app(db: str | os.PathLike[str], token: str | None = None, *,
             interval_ms: int = 1000, title: str = "dabc dashboard"):
    """The Dash app of the dashboard of database ``db``.

    Parameters
    ----------
    db : str or os.PathLike
        An existing dabc database (a SQLite path or a URL); it is never created.
    token : str or None
        The token every request must carry (see the module docstring); None serves
        without one (only :func:`serve`/:func:`start` on a loopback address may ask for
        that).
    interval_ms : int, default 1000
        How often the page asks for an update.
    title : str, default "dabc dashboard"
        The page title.

    Returns
    -------
    dash.Dash
        The app; ``app.server`` is its Flask application (a WSGI app).

    Raises
    ------
    InputError
        When Dash is not installed, or the database does not exist or is not a dabc
        database.

    Examples
    --------
    >>> app = make_app("runs.db", token="a-long-secret-token")    # doctest: +SKIP
    >>> app.server.test_client().get("/").status_code             # doctest: +SKIP
    401
    """
    try:
        import dash
        import flask
        from dash import Input, Output, State, dcc, html, no_update
    except ModuleNotFoundError as exc:
        raise InputError(f"The dashboard needs Dash, which is not installed ({exc}). Install "
                         f"it with: {INSTALL_HINT}") from exc
    db = os.fspath(db)
    shown = data.open_database(db)  # never creates it; raises a clear InputError
    server = flask.Flask("dabc.viz.dashboard")
    _install_auth(server, token)
    app = dash.Dash("dabc.viz.dashboard", server=server, serve_locally=True, title=title,
                    update_title=None, suppress_callback_exceptions=True,
                    include_assets_files=False, assets_folder=os.devnull, compress=False,
                    external_stylesheets=[], external_scripts=[], enable_mcp=False,
                    index_string=_INDEX)
    app.layout = html.Div([
        dcc.Location(id="url"),
        dcc.Interval(id="tick", interval=int(interval_ms), n_intervals=0),
        html.Header([html.H1(dcc.Link("dabc dashboard", href="/",
                                      style={"color": "white", "textDecoration": "none"})),
                     html.Span(display_url(shown.url), className="db"),
                     dcc.Link("all runs", href="/")]),
        html.Div(id="page"),
    ])

    @app.callback(Output("page", "children"), Input("url", "pathname"))
    def _route(pathname):
        match = _RUN_PATH.match(pathname or "/")
        if match:
            return _run_page(db, int(match.group(1)))
        return _runs_page(db)

    @app.callback(Output("runs-table", "children"), Input("tick", "n_intervals"),
                  prevent_initial_call=True)
    def _runs(_):
        return runs_rows(db)

    outputs = [Output("live", "children"), Output("events", "children"),
               Output("stop", "disabled"), Output("apply-rules", "disabled"),
               Output("max-generations", "disabled"), Output("minimum-epsilon", "disabled"),
               Output("max-simulations", "disabled"), Output("max-generations", "placeholder"),
               Output("minimum-epsilon", "placeholder"),
               Output("max-simulations", "placeholder"), Output("steer-note", "children"),
               Output("seen", "data"),
               Output("epsilon-graph", "figure"), Output("samples-graph", "figure"),
               Output("ess-graph", "figure"), Output("acceptance-graph", "figure"),
               Output("probabilities-graph", "figure"),
               Output("generation", "max"), Output("generation", "value"),
               Output("generation", "marks")]

    @app.callback(*outputs, Input("tick", "n_intervals"), Input("run-id", "data"),
                  State("seen", "data"), State("generation", "value"),
                  State("generation", "max"))
    def _run(_, run_id, seen, value, top):
        u = run_update(db, run_id, seen, value, top)
        rules = u["rules"]
        fixed = not u["steerable"]
        figures = u["figures"] or [no_update] * 5
        slider = u["slider"]
        sl = [slider["max"], slider["value"], slider["marks"]] if slider else [no_update] * 3
        return [u["live"], u["events"], not u["alive"], fixed, fixed, fixed, fixed,
                _fmt(rules.get("max_generations"), ""), _fmt(rules.get("minimum_epsilon"), "g"),
                "none" if rules and rules.get("max_total_simulations") is None
                else _fmt(rules.get("max_total_simulations"), ""),
                u["note"], u["generations"], *figures, *sl]

    @app.callback(Output("pair-x", "options"), Output("pair-y", "options"),
                  Output("pair-x", "value"), Output("pair-y", "value"),
                  Input("model", "value"), State("run-id", "data"), prevent_initial_call=True)
    def _model(m, run_id):
        names = data.run_info(db, run_id)["params"][int(m or 0)]
        return names, names, names[0] if names else None, \
            names[1] if len(names) > 1 else None

    @app.callback(Output("marginals-graph", "figure"), Output("pair-graph", "figure"),
                  Input("generation", "value"), Input("model", "value"),
                  Input("pair-x", "value"), Input("pair-y", "value"), State("run-id", "data"))
    def _posterior(t, m, x, y, run_id):
        return posterior_update(db, run_id, t, m, x, y)

    @app.callback(Output("steer-message", "children"), Input("stop", "n_clicks"),
                  Input("apply-rules", "n_clicks"), State("max-generations", "value"),
                  State("minimum-epsilon", "value"), State("max-simulations", "value"),
                  State("run-id", "data"), prevent_initial_call=True)
    def _steer(stop, apply, max_gen, min_eps, max_sims, run_id):
        source = f"dashboard {flask.request.remote_addr}"
        history = data.open_database(db)
        if dash.ctx.triggered_id == "stop":
            asks = [("stop", None)]
        else:
            asks = [(a, v) for a, v in (("max_generations", max_gen),
                                        ("minimum_epsilon", min_eps),
                                        ("max_total_simulations", max_sims)) if v is not None]
            if not asks:
                return "Enter a new value for a rule first."
        done = []
        for action, value in asks:
            try:
                event = history.request_control(action, value, source=source, run_id=run_id)
            except InputError as exc:
                return html.Span(str(exc), style={"color": "#b3261e"})
            done.append(f"{action}{'' if value is None else f' = {value}'} (request {event})")
        return ("Requested " + ", ".join(done) + "; the master applies it after the "
                "generation in progress.")

    return app


def _handler_class():
    """A werkzeug request handler that logs to ``dabc.viz`` at DEBUG, token removed."""
    from werkzeug.serving import WSGIRequestHandler

    class Handler(WSGIRequestHandler):
        def log_request(self, code="-", size="-"):
            path = re.sub(r"(token=)[^&\s]*", r"\1***", self.path)
            _log.debug("dashboard %s %s %s %s", self.address_string(), self.command, path,
                       code)

        def log(self, type, message, *args):  # noqa: A002 - werkzeug's signature
            _log.debug("dashboard: " + re.sub(r"(token=)[^&\s]*", r"\1***", message % args))

    return Handler


class DashboardServer:
    """A running dashboard: a threaded werkzeug server in a daemon thread.

    Made by :func:`start`; :func:`serve` runs one in the foreground.

    Attributes
    ----------
    host, port : str, int
        Where it listens (``port`` is the real one when 0 was asked for).
    token : str or None
        The token (None without one).
    app : dash.Dash
        The app it serves (see :func:`make_app`).
    url : str
        The address to open, with ``?token=`` when there is a token.

    Examples
    --------
    >>> server = start("runs.db", port=0)                      # doctest: +SKIP
    >>> server.url                                              # doctest: +SKIP
    'http://127.0.0.1:40513/?token=...'
    >>> server.stop()                                           # doctest: +SKIP
    """

    def __init__(self, httpd, host: str, token: str | None, path: str = "/", app=None):
        self._httpd = httpd
        self.app = app
        self.host, self.port, self.token = host, int(httpd.port), token
        shown = f"[{host}]" if ":" in host else host
        query = "" if token is None else "?token=" + urllib.parse.quote(token, safe="")
        self.base = f"http://{shown}:{self.port}"
        self.url = f"{self.base}{path}{query}"
        self._thread: threading.Thread | None = None

    def start(self) -> DashboardServer:
        """Serve from a daemon thread; returns self."""
        self._thread = threading.Thread(target=self._httpd.serve_forever,
                                        name="dabc-dashboard", daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve in this thread until interrupted."""
        self._httpd.serve_forever()

    def stop(self) -> None:
        """Stop serving and close the socket."""
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join(timeout=10)
        self._httpd.server_close()


def _listen(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port``, or an InputError that says what to do."""
    try:
        infos = socket.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM,
                                   flags=socket.AI_PASSIVE)
    except OSError as exc:
        raise InputError(f"Cannot listen on {host!r}: {exc.strerror or exc}. Give an address "
                         "of this machine with --host (default 127.0.0.1).") from exc
    family, _, _, _, address = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        if exc.errno in (errno.EADDRINUSE, errno.EACCES):
            what = "is in use (another dashboard or program listens there)" \
                if exc.errno == errno.EADDRINUSE else "needs privileges (a port below 1024)"
            raise InputError(f"Port {port} on {host} {what}; choose another with --port, "
                             f"e.g. --port {port + 1 if port else 8050}.") from exc
        raise InputError(f"Cannot listen on {host}:{port}: {exc.strerror or exc}. Check "
                         "--host (an address of this machine) and --port.") from exc
    return sock


def _make_server(db, host: str, port: int, token: str | None, no_token: bool,
                 run: int | None) -> DashboardServer:
    check_bind(host, no_token)
    from werkzeug.serving import make_server

    app = make_app(db, token=token)
    if run is not None:
        data.run_info(db, run)  # a clear error for a run that does not exist
    sock = _listen(host, int(port))
    try:
        # werkzeug binds again only without fd=; a bind error there would exit the process
        httpd = make_server(host, sock.getsockname()[1], app.server, threaded=True,
                            request_handler=_handler_class(), fd=sock.fileno())
    finally:
        sock.close()  # werkzeug holds its own duplicate of the socket
    if no_token:
        _log.warning("dashboard without a token on %s:%s: every local user can read the runs "
                     "and stop them", host, httpd.port)
    return DashboardServer(httpd, host, token, "/" if run is None else f"/run/{run}", app)


def start(db: str | os.PathLike[str], host: str = "127.0.0.1", port: int = 8050,
          token: str | None = None, token_file: str | os.PathLike[str] | None = None,
          no_token: bool = False, run: int | None = None) -> DashboardServer:
    """Start the dashboard in a background thread (for tests and notebooks).

    Parameters
    ----------
    db : str or os.PathLike
        An existing dabc database.
    host : str, default "127.0.0.1"
        The address to bind to.
    port : int, default 8050
        The port (0: a free one, see :attr:`DashboardServer.port`).
    token, token_file, no_token
        As for :func:`read_token`; a random token by default (in
        :attr:`DashboardServer.url`; nothing is printed).
    run : int, optional
        Open this run's page first (the URL's path).

    Returns
    -------
    DashboardServer
        Running; call ``stop()`` to end it.

    Raises
    ------
    InputError
        For a missing database or run, ``no_token`` on a non-loopback address, a port in
        use, an unreadable token file.

    Examples
    --------
    >>> server = start("runs.db", port=0)                      # doctest: +SKIP
    >>> server.stop()                                           # doctest: +SKIP
    """
    check_bind(host, no_token)
    token, _ = read_token(token, token_file, no_token)
    return _make_server(db, host, port, token, no_token, run).start()


def serve(db: str | os.PathLike[str], host: str = "127.0.0.1", port: int = 8050,
          token: str | None = None, token_file: str | os.PathLike[str] | None = None,
          no_token: bool = False, run: int | None = None, stream: IO[str] | None = None
          ) -> None:
    """Serve the dashboard until interrupted (what ``dabc dashboard`` runs).

    The address to open is written once to ``stream`` (stderr): with a random token it
    is the only place the token appears (never in a log).

    Parameters
    ----------
    db : str or os.PathLike
        An existing dabc database.
    host : str, default "127.0.0.1"
        The address to bind to; another than loopback needs a token.
    port : int, default 8050
        The port.
    token, token_file, no_token
        As for :func:`read_token`: the token, a file holding it, else
        ``$DABC_DASHBOARD_TOKEN``, else a random one.
    run : int, optional
        Open this run's page first.
    stream : file, optional
        Where the address goes; default ``sys.stderr``.

    Raises
    ------
    InputError
        As for :func:`start`.

    Examples
    --------
    >>> serve("runs.db")                                        # doctest: +SKIP
    dabc dashboard of runs.db: http://127.0.0.1:8050/?token=...
    """
    check_bind(host, no_token)
    token, generated = read_token(token, token_file, no_token)
    server = _make_server(db, host, port, token, no_token, run)
    out = sys.stderr if stream is None else stream
    name = display_url(database_url(os.fspath(db)))
    if token is None:
        out.write(f"dabc dashboard of {name}: {server.url} (no token)\n")
    elif generated:
        out.write(f"dabc dashboard of {name}: {server.url}\n"
                  "(a new random token; open that address, or send the header "
                  "'Authorization: Bearer <token>')\n")
    else:
        plain = server.url.split("?")[0]
        out.write(f"dabc dashboard of {name}: {plain} (open it with ?token=<your token>, or "
                  "send the header 'Authorization: Bearer <token>')\n")
    out.flush()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
