"""One file that shows a stored run: every plot, its configuration, its generations.

Why one self-contained file
---------------------------
A run often finishes on a cluster whose nodes have no internet and whose results are copied
to a laptop, attached to an e-mail or archived with a paper. :func:`write_report` therefore
writes a single HTML file that needs nothing else to be read: the figures are PNGs embedded
as ``data:`` URIs, the style sheet is inline, and there is no script and no link to any
other file or server (the only links are ``#anchors`` within the page). ``fmt="pdf"`` writes
the same content as a multi-page PDF (matplotlib's ``PdfPages``; the tables as text pages).

What it shows
-------------
- the run's configuration, read from the database without running any stored code
  (:func:`dabc.engine.config.read_config`; the observed data by the data-only unpickler):
  models, priors, distance, epsilon schedule, transitions, seed, population, the stopping
  rules and the master's host (from the run's live row, when it wrote one), status and stop
  reason. The sampler is not stored with a run and is not shown. The database is shown by
  :func:`dabc.storage.display_url`, so a password in its URL never appears;
- the generation table (as ``dabc info``): t, epsilon, simulations, acceptance rate, ESS,
  wall time and each model's probability;
- the posterior summary of the last generation (:func:`dabc.storage.posterior_summary`);
- the plots: epsilon, simulations, acceptance rate, ESS, wall time, the model probabilities
  (several models), the adaptive distance's weights (an adaptive distance), and per model
  alive in the last generation its credible intervals over the generations and the KDE
  matrix of its last generation (:func:`~dabc.viz.kde.plot_kde_1d` for one parameter);
- the steering log, when the run was steered.

Figures are drawn on :class:`matplotlib.figure.Figure` objects, never through ``pyplot``,
so writing a report changes no global matplotlib state and needs no display.
"""

from __future__ import annotations

import base64
import html
import io
import logging
import math
import os
import re
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from .._version import __version__
from ..engine.config import StoredCode, load_observed, read_config
from ..errors import DabcError, InputError
from ..storage import History, display_url, open_history, posterior_summary, sqlite_path
from ._common import INSTALL_HINT

__all__ = ["REPORT_FORMATS", "write_report"]

logger = logging.getLogger("dabc.viz")

REPORT_FORMATS = ("html", "pdf")
"""The formats :func:`write_report` writes."""

#: At most this many parameters of a model go into its KDE matrix (k x k panels).
MATRIX_LIMIT = 6

_DPI = 100
_CREDENTIALS = re.compile(r"(://[^/:@\s]*:)[^@/\s]+@")


# --- reading the run ---------------------------------------------------------------------
def _mask(text: str) -> str:
    """``text`` with any password of a URL in it replaced by ``***``."""
    text = display_url(text) if "://" in text and " " not in text.strip() else text
    return _CREDENTIALS.sub(r"\1***@", text)


def _history(history_or_db, run_id: int | None) -> History:
    if isinstance(history_or_db, History):
        h = history_or_db
        if run_id is None or run_id == h.id:
            if h.id is None:
                raise InputError(f"No run stored in {display_url(h.url)}.")
            return h
        history_or_db = h.url
    if not isinstance(history_or_db, str | os.PathLike):
        raise InputError("write_report needs a History or a database (a SQLite path or a URL), "
                         f"not {type(history_or_db).__name__}.")
    h, _ = open_history(history_or_db, run_id)
    return h


def _matplotlib():
    try:
        from matplotlib.figure import Figure
    except ModuleNotFoundError as exc:
        raise InputError(f"A report's figures are drawn with matplotlib, which is not "
                         f"installed ({exc}). Install it with: {INSTALL_HINT}") from exc
    return Figure


def _fmt(v) -> str:
    """A configuration value in a few characters."""
    if isinstance(v, StoredCode):
        return f"stored code ({v.type})"
    if isinstance(v, float):
        return f"{v:g}" if math.isfinite(v) else str(v)
    if isinstance(v, np.ndarray):
        flat = ", ".join(_fmt(float(x)) for x in v.ravel()[:8])
        more = ", ..." if v.size > 8 else ""
        return f"[{flat}{more}]" if v.ndim <= 1 else f"array {v.shape} [{flat}{more}]"
    if isinstance(v, dict):
        return ", ".join(f"{k}={_fmt(x)}" for k, x in v.items())
    if isinstance(v, list | tuple):
        return "[" + ", ".join(_fmt(x) for x in v) + "]"
    return _mask(str(v))


def _component(spec) -> str:
    if isinstance(spec, StoredCode):
        return f"user code ({spec.type}; not run to make this report)"
    if not isinstance(spec, dict):
        return _fmt(spec)
    params = spec.get("params") or {}
    text = spec.get("name", "?")
    if params:
        text += "(" + ", ".join(f"{k}={_fmt(v)}" for k, v in params.items()) + ")"
    return text


def _prior(fields: list) -> str:
    parts = []
    for f in fields:
        args = [_fmt(a) for a in f.get("args", [])]
        args += [f"{k}={_fmt(v)}" for k, v in (f.get("kwargs") or {}).items()]
        parts.append(f"{f.get('parameter')} ~ {f.get('distribution')}({', '.join(args)})")
    return "; ".join(parts)


def _configuration(h: History, row) -> list[tuple[str, str]]:
    """``(field, value)`` rows of the run's configuration, no password and no code run."""
    rows: list[tuple[str, str]] = [
        ("database", display_url(h.url)), ("run", str(h.id)),
        ("created", _when(row.get("created")) + " UTC"), ("status", str(row.get("status") or "-")),
        ("stop reason", _mask(str(row.get("stop_reason") or "-"))),
        ("seed", str(h.seed)), ("population size", str(int(row["population_size"]))),
        ("summary statistics", ", ".join(h.stat_columns)),
    ]
    try:
        obs = load_observed(h.observed, trust=False)
        rows.append(("observed data", _fmt(obs)))
    except DabcError as exc:
        rows.append(("observed data", f"not shown ({exc})"))
    try:
        cfg = read_config(h)
    except DabcError as exc:
        cfg = None
        rows.append(("configuration", f"not shown: {exc}"))
    for m, (name, params) in enumerate(zip(h.model_names, h.param_names, strict=True)):
        text = f"{name!r}, parameters {', '.join(params)}"
        if cfg is not None:
            priors = cfg.fields.get("priors") or []
            if m < len(priors):
                text += f"; prior {_prior(priors[m])}"
            mp = cfg.fields.get("model_prior") or []
            if len(h.model_names) > 1 and m < len(mp):
                text += f"; prior probability {_fmt(float(mp[m]))}"
        rows.append((f"model {m}", text))
    if cfg is not None:
        f = cfg.fields
        rows.append(("distance", _component(f.get("distance"))))
        rows.append(("epsilon", _component(f.get("epsilon"))))
        trans = f.get("transitions") or []
        rows.append(("transitions", "; ".join(_component(tr) for tr in trans) or "-"))
        rows.append(("stay probability", _fmt(f.get("stay_probability"))))
        rows.append(("max failure rate", _fmt(f.get("max_failure_rate"))))
        rows.append(("written by", _fmt(f.get("written_by"))))
        if cfg.code:
            rows.append(("stored code", ", ".join(f"{c.field} ({c.type}, {c.size:,} bytes)"
                                                  for c in cfg.code)
                         + "; none of it was run to make this report"))
    rows.append(("sampler", "not recorded in the database"))
    state = h.live_state()
    if state is not None:
        rules = state.get("rules") or {}
        rows.append(("stopping rules", ", ".join(f"{k}={_fmt(v)}" for k, v in rules.items()
                                                 if v is not None) or "-"))
        rows.append(("master", f"{_mask(str(state.get('host')))} (pid {state.get('pid')}), "
                     f"last heartbeat {_when(state.get('updated'))} UTC"
                     + (", running now" if state.get("alive") else "")))
    else:
        rows.append(("stopping rules", "not recorded (the run wrote no live state)"))
    return rows


def _when(x) -> str:
    if x is None:
        return "-"
    try:
        import pandas as pd

        if x is pd.NaT or (isinstance(x, float) and math.isnan(x)):
            return "-"
        return pd.Timestamp(x).strftime("%Y-%m-%d %H:%M:%S")
    except (TypeError, ValueError):
        return str(x)


def _generation_table(h: History) -> tuple[list[str], list[list[str]]]:
    from .plots import walltimes

    gens = h.get_all_populations()
    probs = h.get_model_probabilities()
    wall = walltimes(h)
    headers = ["t", "epsilon", "simulations", "acceptance rate", "ESS", "wall time (s)"]
    headers += [f"p({name})" for name in h.model_names]
    rows = []
    for k, g in enumerate(gens.itertuples()):
        row = [str(int(g.t)), f"{g.epsilon:.4g}", f"{int(g.n_simulations):,}",
               f"{g.acceptance_rate:.4f}", f"{g.ess:.1f}", f"{wall[k]:.2f}"]
        row += [f"{p:.3f}" for p in probs.loc[int(g.t)]]
        rows.append(row)
    return headers, rows


def _posterior_table(h: History) -> tuple[list[str], list[list[str]], list[str]]:
    """The last generation's summary per model and parameter, and notes on dead models."""
    headers = ["model", "p(model)", "parameter", "mean", "sd", "2.5%", "97.5%"]
    rows, notes = [], []
    probs = h.get_model_probabilities().iloc[-1]
    for m, name in enumerate(h.model_names):
        params, w = h.get_distribution(m=m)
        if not len(w):
            notes.append(f"model {m} ({name!r}) has no particles in generation {h.max_t}.")
            continue
        for p in params.columns:
            s = posterior_summary(params[p].to_numpy(), w)
            rows.append([name, f"{probs.iloc[m]:.3f}", p, f"{s['mean']:.4g}", f"{s['sd']:.4g}",
                         f"{s['q025']:.4g}", f"{s['q975']:.4g}"])
    return headers, rows, notes


def _events_table(h: History) -> tuple[list[str], list[list[str]]]:
    ev = h.events()
    headers = ["requested", "source", "action", "value", "applied", "outcome"]
    rows = [[_when(e.time), _mask(str(e.source or "-")), str(e.action),
             _mask(str(e.value if e.value is not None else "-")), _when(e.applied),
             _mask(str(e.outcome or "pending"))] for e in ev.itertuples()]
    return headers, rows


# --- the figures ---------------------------------------------------------------------------
class _Plot:
    """One figure of the report: its anchor, heading, the plot function's name, a drawer."""

    def __init__(self, key: str, title: str, function: str, draw: Callable, size):
        self.key, self.title, self.function, self.draw, self.size = (key, title, function,
                                                                     draw, size)


def _plots(h: History) -> tuple[list[_Plot], list[str]]:
    """The report's figures for run ``h``, and why any usual one is left out."""
    from . import kde, plots

    out = [
        _Plot("epsilons", "Acceptance threshold", "plot_epsilons",
              lambda fig: plots.plot_epsilons(h, ax=fig.subplots()), (6.0, 3.6)),
        _Plot("sample-numbers", "Simulations per generation", "plot_sample_numbers",
              lambda fig: plots.plot_sample_numbers(h, ax=fig.subplots()), (6.0, 3.6)),
        _Plot("acceptance-rates", "Acceptance rate", "plot_acceptance_rates",
              lambda fig: plots.plot_acceptance_rates(h, ax=fig.subplots()), (6.0, 3.6)),
        _Plot("effective-sample-sizes", "Effective sample size", "plot_effective_sample_sizes",
              lambda fig: plots.plot_effective_sample_sizes(h, ax=fig.subplots()), (6.0, 3.6)),
        _Plot("walltime", "Wall time per generation", "plot_walltime",
              lambda fig: plots.plot_walltime(h, ax=fig.subplots()), (6.0, 3.6)),
    ]
    notes = []
    if len(h.model_names) > 1:
        out.append(_Plot("model-probabilities", "Model probabilities",
                         "plot_model_probabilities",
                         lambda fig: plots.plot_model_probabilities(h, ax=fig.subplots()),
                         (6.0, 3.6)))
    try:
        plots.distance_weights(h)
    except InputError as exc:
        notes.append(f"No distance weights: {exc}")
    else:
        out.append(_Plot("distance-weights", "Adaptive distance weights",
                         "plot_distance_weights",
                         lambda fig: plots.plot_distance_weights(h, ax=fig.subplots()),
                         (6.0, 3.6)))
    for m, name in enumerate(h.model_names):
        _, w = h.get_distribution(m=m)
        if not len(w):
            notes.append(f"No posterior plots of model {m} ({name!r}): it has no particles in "
                         f"generation {h.max_t}.")
            continue
        names = h.param_names[m][:MATRIX_LIMIT]
        if len(h.param_names[m]) > MATRIX_LIMIT:
            notes.append(f"The KDE matrix of model {m} ({name!r}) shows its first "
                         f"{MATRIX_LIMIT} of {len(h.param_names[m])} parameters.")
        k = len(names)
        if k == 1:
            out.append(_Plot(f"kde-{m}", f"Posterior of {name}, generation {h.max_t}",
                             "plot_kde_1d",
                             lambda fig, m=m, x=names[0]: kde.plot_kde_1d(
                                 h, x, m=m, ax=fig.subplots()), (6.0, 3.6)))
        else:
            out.append(_Plot(f"kde-{m}", f"Posterior of {name}, generation {h.max_t}",
                             "plot_kde_matrix",
                             lambda fig, m=m, names=names: kde.plot_kde_matrix(
                                 h, m=m, names=names,
                                 ax=fig.subplots(len(names), len(names), squeeze=False)),
                             (2.6 * k + 0.6, 2.4 * k + 0.6)))
        ps = h.param_names[m]
        out.append(_Plot(f"credible-intervals-{m}", f"Credible intervals of {name}",
                         "plot_credible_intervals",
                         lambda fig, m=m, ps=ps: plots.plot_credible_intervals(
                             h, m=m, ax=fig.subplots(len(ps), 1, sharex=True,
                                                     squeeze=False)[:, 0]),
                         (6.0, 2.4 * len(ps) + 0.6)))
    return out, notes


def _figure(plot: _Plot):
    Figure = _matplotlib()
    fig = Figure(figsize=plot.size)
    plot.draw(fig)
    fig.tight_layout()
    return fig


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=_DPI)
    return base64.b64encode(buf.getvalue()).decode("ascii")


# --- HTML ----------------------------------------------------------------------------------
_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 2em auto;
       max-width: 1100px; padding: 0 1em; color: #222; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; }
h2 { font-size: 1.25em; border-bottom: 1px solid #ccc; padding-bottom: 0.2em;
     margin-top: 1.8em; }
h3 { font-size: 1.05em; margin-bottom: 0.3em; }
p.sub { color: #666; margin-top: 0; }
nav ul { columns: 2; padding-left: 1.2em; }
table { border-collapse: collapse; font-size: 0.9em; margin: 0.5em 0; }
th, td { border: 1px solid #ddd; padding: 0.25em 0.6em; text-align: left;
         vertical-align: top; }
th { background: #f3f3f3; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
table.config td:first-child { font-weight: 600; white-space: nowrap; }
div.plots { display: grid; grid-template-columns: repeat(auto-fill, minmax(500px, 1fr));
            gap: 0.5em 1.5em; }
figure { margin: 0.5em 0 1.5em 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { color: #555; font-size: 0.9em; }
code { background: #f3f3f3; padding: 0 0.2em; }
.note { color: #7a5a00; }
"""


def _e(text) -> str:
    return html.escape(str(text), quote=True)


def _html_table(headers, rows, table_id: str, numeric_from: int = 0,
                cls: str | None = None) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = []
    for r in rows:
        cells = "".join(f'<td class="num">{_e(c)}</td>' if i >= numeric_from and
                        _is_number(c) else f"<td>{_e(c)}</td>" for i, c in enumerate(r))
        body.append(f"<tr>{cells}</tr>")
    klass = f' class="{cls}"' if cls else ""
    return (f'<table id="{table_id}"{klass}><thead><tr>{head}</tr></thead><tbody>'
            + "".join(body) + "</tbody></table>")


def _is_number(text: str) -> bool:
    try:
        float(str(text).replace(",", ""))
    except ValueError:
        return False
    return True


def _html(h: History, config, gens, post, events, figures, notes) -> str:
    title = f"dabc run {h.id}: {', '.join(h.model_names)}"
    toc = [("configuration", "Configuration"), ("generations", "Generations"),
           ("posterior", "Posterior summary")]
    toc += [(f"fig-{p.key}", p.title) for p, _ in figures]
    if events[1]:
        toc.append(("steering", "Steering log"))
    parts = [
        "<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(title)}</title>", f"<style>{_CSS}</style>", "</head>", "<body>",
        f"<h1>{_e(title)}</h1>",
        f'<p class="sub">{_e(display_url(h.url))} &middot; {h.n_populations} generations, '
        f"{h.total_simulations:,} simulations &middot; written by dabc {_e(__version__)} on "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC</p>",
        "<nav><ul>" + "".join(f'<li><a href="#{k}">{_e(v)}</a></li>' for k, v in toc)
        + "</ul></nav>",
        '<h2 id="configuration">Configuration</h2>',
        _html_table(["field", "value"], config, "config-table", numeric_from=99, cls="config"),
        '<h2 id="generations">Generations</h2>',
        _html_table(*gens, "generation-table"),
        '<h2 id="posterior">Posterior summary (generation ' + str(h.max_t) + ")</h2>",
        _html_table(post[0], post[1], "posterior-table", numeric_from=1),
    ]
    parts += [f'<p class="note">{_e(n)}</p>' for n in post[2]]
    parts.append('<h2 id="plots">Plots</h2>\n<div class="plots">')
    for plot, data in figures:
        parts.append(f'<figure id="fig-{plot.key}"><h3>{_e(plot.title)}</h3>'
                     f'<img src="data:image/png;base64,{data}" alt="{_e(plot.title)}" '
                     f'data-function="{plot.function}">'
                     f"<figcaption><code>dabc.viz.{plot.function}</code></figcaption></figure>")
    parts.append("</div>")
    parts += [f'<p class="note">{_e(n)}</p>' for n in notes]
    if events[1]:
        parts += ['<h2 id="steering">Steering log</h2>', _html_table(*events, "events-table",
                                                                     numeric_from=99)]
    parts += ["</body>", "</html>", ""]
    return "\n".join(parts)


# --- PDF -----------------------------------------------------------------------------------
_LINES_PER_PAGE = 62


def _text_table(headers, rows) -> list[str]:
    cells = [[str(c) for c in r] for r in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    numeric = [bool(cells) and all(_is_number(r[i]) for r in cells)
               for i in range(len(headers))]
    line = "  ".join(h.rjust(w) if num else h.ljust(w)
                     for h, w, num in zip(headers, widths, numeric, strict=True))
    out = [line.rstrip(), "-" * len(line.rstrip())]
    out += ["  ".join(c.rjust(w) if num else c.ljust(w)
                      for c, w, num in zip(r, widths, numeric, strict=True)).rstrip()
            for r in cells]
    return out


def _wrap(text: str, width: int) -> list[str]:
    import textwrap

    return textwrap.wrap(text, width, subsequent_indent="    ") or [""]


def _text_pages(pdf, lines: list[str]) -> int:
    Figure = _matplotlib()
    n = 0
    for start in range(0, max(len(lines), 1), _LINES_PER_PAGE):
        fig = Figure(figsize=(8.27, 11.69))
        fig.text(0.06, 0.96, "\n".join(lines[start:start + _LINES_PER_PAGE]),
                 family="monospace", fontsize=7.5, va="top", ha="left")
        pdf.savefig(fig)
        n += 1
    return n


def _pdf(h: History, out: Path, config, gens, post, events, plots) -> int:
    from matplotlib.backends.backend_pdf import PdfPages

    title = f"dabc run {h.id}: {', '.join(h.model_names)}"
    lines = [title, display_url(h.url), "", "CONFIGURATION", ""]
    width = max(len(k) for k, _ in config)
    for k, v in config:
        wrapped = _wrap(v, 118 - width)
        lines.append(f"{k.ljust(width)}  {wrapped[0]}")
        lines += [" " * (width + 2) + w for w in wrapped[1:]]
    lines += ["", "GENERATIONS", "", *_text_table(*gens), "",
              f"POSTERIOR SUMMARY (generation {h.max_t})", "", *_text_table(post[0], post[1])]
    lines += post[2]
    if events[1]:
        lines += ["", "STEERING LOG", "", *_text_table(*events)]
    with PdfPages(out, metadata={"Title": title, "Creator": f"dabc {__version__}"}) as pdf:
        pages = _text_pages(pdf, lines)
        for plot in plots:
            pdf.savefig(_figure(plot))
            pages += 1
    return pages


# --- the public function -----------------------------------------------------------------
def _check_out(out, fmt: str) -> Path:
    if fmt not in REPORT_FORMATS:
        raise InputError(f"fmt must be one of {', '.join(REPORT_FORMATS)}, not {fmt!r}.")
    path = Path(os.fspath(out))
    if path.is_dir():
        raise InputError(f"{str(path)!r} is a folder; give a file name such as "
                         f"{str(path / ('report.' + fmt))!r}.")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise InputError(f"The folder {str(parent)!r} of {str(path)!r} does not exist; create "
                         "it first or write the report elsewhere.")
    return path


def write_report(history_or_db: History | str | os.PathLike[str], out: str | os.PathLike[str],
                 run_id: int | None = None, fmt: str = "html") -> Path:
    """Write one self-contained report of a stored run: plots, configuration, tables.

    Parameters
    ----------
    history_or_db : History or str or os.PathLike
        The run's History, or its database (a SQLite path or a URL; never created).
    out : str or os.PathLike
        The file to write (replaced if it exists); its folder must exist.
    run_id : int, optional
        The run; default the History's run, or the database's latest.
    fmt : {"html", "pdf"}, default "html"
        One HTML file with the figures embedded as ``data:`` URIs and no reference to any
        other file or server, or a multi-page PDF (text pages for the tables, one page per
        figure).

    Returns
    -------
    pathlib.Path
        ``out``.

    Raises
    ------
    InputError
        For an unknown format, an ``out`` that is a folder or whose folder does not exist,
        a database that does not exist or holds no such run, a run with no stored
        generation yet, or matplotlib not installed.

    Examples
    --------
    >>> from dabc.viz import write_report                      # doctest: +SKIP
    >>> write_report("runs.db", "report.html")                 # doctest: +SKIP
    PosixPath('report.html')
    >>> write_report(history, "report.pdf", fmt="pdf")         # doctest: +SKIP
    PosixPath('report.pdf')
    """
    path = _check_out(out, fmt)
    _matplotlib()
    h = _history(history_or_db, run_id)
    runs = h.all_runs()
    row = runs.loc[runs["id"] == h.id].iloc[0].to_dict()
    if h.n_populations == 0:
        where = sqlite_path(h.url) or display_url(h.url)
        if row.get("status") == "running":
            raise InputError(f"Run {h.id} in {where!r} has no stored generation yet; write "
                             "its report once the first generation is stored ('dabc info' "
                             "shows its progress).")
        raise InputError(f"Run {h.id} in {where!r} stored no generation (status "
                         f"{row.get('status')}: {_mask(str(row.get('stop_reason') or '-'))}); "
                         "there is nothing to report. Choose another run with --run / "
                         "run_id ('dabc info' lists them).")
    config = _configuration(h, row)
    gens = _generation_table(h)
    post = _posterior_table(h)
    events = _events_table(h)
    plots, notes = _plots(h)
    if fmt == "html":
        figures = []
        for plot in plots:
            fig = _figure(plot)
            figures.append((plot, _png(fig)))
        text = _html(h, config, gens, post, events, figures, notes)
        tmp = path.with_name(path.name + ".part")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
        logger.info("wrote the report of run %s (%d figures) to %s", h.id, len(figures), path)
    else:
        tmp = path.with_name(path.name + ".part")
        pages = _pdf(h, tmp, config, gens, post, events, plots)
        os.replace(tmp, path)
        logger.info("wrote the report of run %s (%d pages) to %s", h.id, pages, path)
    return path
