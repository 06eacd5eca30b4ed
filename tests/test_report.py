"""``dabc report`` and :func:`dabc.viz.write_report` on real runs (tests/viz_runs.py).

The HTML file is parsed: every ``src``/``href`` must be a ``data:`` URI or an ``#anchor`` of
the page, there is no script, style sheet link, frame or URL of any kind; each plot is an
embedded PNG; the generation table has one row per stored generation with the stored
epsilons; the posterior table is ``posterior_summary``'s. The PDF is a PDF with a page per
figure. The errors (no such database, which is not created; no such run; a run without a
generation; matplotlib missing; bad output paths) are one line on stderr and exit code 1.
"""

from __future__ import annotations

import base64
import re
import struct
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest
import sqlalchemy as sa

import dabc
from dabc.cli.main import main
from dabc.storage import posterior_summary

sys.path.insert(0, str(Path(__file__).parent))
import viz_runs  # noqa: E402

ONE_MODEL_PLOTS = {"plot_epsilons", "plot_sample_numbers", "plot_acceptance_rates",
                   "plot_effective_sample_sizes", "plot_walltime", "plot_distance_weights",
                   "plot_kde_matrix", "plot_credible_intervals"}
TWO_MODEL_PLOTS = ONE_MODEL_PLOTS | {"plot_model_probabilities", "plot_kde_1d"}


class Page(HTMLParser):
    """Everything the checks need from an HTML file: tags, links, ids, images, tables."""

    def __init__(self, text: str):
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.links: list[tuple[str, str, str]] = []  # (tag, attribute, value)
        self.ids: set[str] = set()
        self.images: list[dict] = []
        self.tables: dict[str, list[list[str]]] = {}
        self._table: str | None = None
        self._row: list[str] | None = None
        self._cell: list[str] | None = None
        self._in_body = False
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append(tag)
        for name, value in attrs:
            if name in ("src", "href", "action", "srcset", "poster", "data", "background"):
                self.links.append((tag, name, value or ""))
        if "id" in a:
            self.ids.add(a["id"])
        if tag == "img":
            self.images.append(a)
        elif tag == "table":
            self._table = a.get("id")
            self.tables[self._table] = []
        elif tag == "tbody":
            self._in_body = True
        elif tag == "tr" and self._in_body:
            self._row = []
        elif tag == "td" and self._row is not None:
            self._cell = []

    def handle_endtag(self, tag):
        if tag == "td" and self._cell is not None:
            self._row.append("".join(self._cell).strip())
            self._cell = None
        elif tag == "tr" and self._row is not None:
            self.tables[self._table].append(self._row)
            self._row = None
        elif tag == "tbody":
            self._in_body = False

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def png_size(data_uri: str) -> tuple[int, int]:
    assert data_uri.startswith("data:image/png;base64,")
    raw = base64.b64decode(data_uri.split(",", 1)[1], validate=True)
    assert raw[:8] == b"\x89PNG\r\n\x1a\n" and raw[12:16] == b"IHDR"
    return struct.unpack(">II", raw[16:24])


@pytest.fixture
def cli(capsys):
    """``cli(*args) -> (exit code, stdout, stderr)`` of ``dabc`` run in this process."""

    def call(*args):
        capsys.readouterr()
        rc = main([str(a) for a in args])
        out, err = capsys.readouterr()
        assert "Traceback" not in err, err
        return rc, out, err

    return call


@pytest.fixture(scope="module")
def dbs(tmp_path_factory):
    """{"one": (db with two one-model runs, the first's History), "two": (db, History)}."""
    d = tmp_path_factory.mktemp("report")
    one = viz_runs.one_model_run(str(d / "one.db"))
    other = viz_runs.one_model_run(str(d / "one.db"), seed=5, generations=3)
    two = viz_runs.two_model_run(str(d / "two.db"))
    yield {"one": (d / "one.db", one), "other": (d / "one.db", other),
           "two": (d / "two.db", two)}
    for h in (one, other, two):
        h.engine.dispose()


@pytest.fixture(scope="module")
def pages(dbs, tmp_path_factory):
    """The HTML report of the one-model run (through the console script, a subprocess) and
    of the two-model run (``main()``): {kind: (text, Page)}."""
    d = tmp_path_factory.mktemp("html")
    db, h = dbs["one"]
    out_one = d / "one.html"
    script = Path(sys.executable).parent / "dabc"
    proc = subprocess.run([str(script), "report", str(db), "--run", str(h.id), "--out",
                           str(out_one)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert f"wrote the HTML report of run {h.id} (4 generations) to {out_one}" in proc.stderr
    out_two = d / "two.html"
    assert main(["report", str(dbs["two"][0]), "--out", str(out_two)]) == 0
    made = {}
    for kind, path in (("one", out_one), ("two", out_two)):
        text = path.read_text(encoding="utf-8")
        made[kind] = (text, Page(text))
    return made


@pytest.mark.parametrize("kind", ["one", "two"])
def test_html_is_self_contained(pages, kind):
    text, page = pages[kind]
    assert text.startswith("<!DOCTYPE html>")
    assert page.links, "no links at all: the parser found nothing"
    for tag, attr, value in page.links:
        if value.startswith("#"):
            assert value[1:] in page.ids, f"{tag} {attr}={value} points at nothing"
        else:
            assert value.startswith("data:"), f"{tag} {attr}={value[:60]!r} is not embedded"
    assert not {"script", "link", "iframe", "object", "embed", "base", "frame"} & set(page.tags)
    lowered = text.lower()
    for needle in ("http://", "https://", "//cdn", "@import", "url("):
        assert needle not in lowered, needle


@pytest.mark.parametrize("kind", ["one", "two"])
def test_html_holds_every_plot_as_an_embedded_png(pages, kind):
    _, page = pages[kind]
    functions = [img.get("data-function") for img in page.images]
    assert set(functions) == (ONE_MODEL_PLOTS if kind == "one" else TWO_MODEL_PLOTS)
    if kind == "two":  # per model: narrow (one parameter) a KDE, wide (two) a matrix
        assert functions.count("plot_credible_intervals") == 2
    for img in page.images:
        width, height = png_size(img["src"])
        assert width >= 300 and height >= 200, (img["alt"], width, height)
        assert img["alt"]


@pytest.mark.parametrize("kind", ["one", "two"])
def test_generation_table_rows_are_the_stored_generations(dbs, pages, kind):
    _, h = dbs[kind]
    _, page = pages[kind]
    rows = page.tables["generation-table"]
    g = h.get_all_populations()
    probs = h.get_model_probabilities()
    assert len(rows) == h.n_populations == len(g) == 4
    for row, gen, (_, p) in zip(rows, g.itertuples(), probs.iterrows(), strict=True):
        assert row[0] == str(gen.t)
        assert row[1] == f"{gen.epsilon:.4g}"
        assert row[2] == f"{gen.n_simulations:,}"
        assert float(row[3]) == pytest.approx(gen.acceptance_rate, abs=5e-5)
        assert float(row[4]) == pytest.approx(gen.ess, abs=0.05)
        assert [float(c) for c in row[6:]] == pytest.approx(list(p), abs=5e-4)
    assert rows[0][1] == "inf" and all(float(r[1]) > float(s[1])
                                       for r, s in zip(rows[1:], rows[2:], strict=False))


@pytest.mark.parametrize("kind", ["one", "two"])
def test_posterior_table_is_posterior_summary(dbs, pages, kind):
    _, h = dbs[kind]
    _, page = pages[kind]
    rows = page.tables["posterior-table"]
    expected = []
    for m, name in enumerate(h.model_names):
        params, w = h.get_distribution(m)
        for p in params.columns:
            s = posterior_summary(params[p].to_numpy(), w)
            expected.append([name, p] + [f"{s[k]:.4g}" for k in ("mean", "sd", "q025", "q975")])
    assert [[r[0], r[2], *r[3:]] for r in rows] == expected


def test_configuration_table(dbs, pages):
    _, h = dbs["one"]
    _, page = pages["one"]
    config = dict(page.tables["config-table"])
    assert config["run"] == str(h.id) and config["seed"] == "11"
    assert config["population size"] == "200" and config["status"] == "done"
    assert config["stop reason"] == "max_generations=4 reached"
    assert config["model 0"] == ("'normal', parameters mu, sigma; prior mu ~ norm(0, 2); "
                                 "sigma ~ uniform(0.2, 2.8)")
    assert config["distance"].startswith("AdaptivePNormDistance(")
    assert config["epsilon"].startswith("MedianEpsilon(")
    assert config["observed data"] == "mean=1.1, sd=1.4"
    assert "max_generations=4" in config["stopping rules"]
    assert "models[0].function" in config["stored code"]
    assert config["sampler"] == "not recorded in the database"


def test_run_is_selected(dbs, tmp_path, cli):
    db, other = dbs["other"]
    out = tmp_path / "other.html"
    rc, _, err = cli("report", db, "--run", other.id, "--out", out)
    assert rc == 0, err
    page = Page(out.read_text(encoding="utf-8"))
    assert len(page.tables["generation-table"]) == other.n_populations == 3
    assert dict(page.tables["config-table"])["seed"] == "5"
    # the latest run by default, and write_report with a History
    path = dabc.viz.write_report(dbs["one"][1], tmp_path / "api.html")
    assert dict(Page(path.read_text()).tables["config-table"])["run"] == str(dbs["one"][1].id)


@pytest.mark.parametrize("how", ["suffix", "format"])
def test_pdf(dbs, tmp_path, cli, how):
    db, h = dbs["two"]
    out = tmp_path / ("r.pdf" if how == "suffix" else "r.report")
    args = ["report", db, "--out", out] + (["--format", "pdf"] if how == "format" else [])
    rc, _, err = cli(*args)
    assert rc == 0 and "PDF report" in err, err
    raw = out.read_bytes()
    assert raw.startswith(b"%PDF-") and raw.rstrip().endswith(b"%%EOF")
    pages = len(re.findall(rb"/Type\s*/Page(?![s\w])", raw))
    figures = len(TWO_MODEL_PLOTS) + 1  # credible intervals of both models
    assert pages >= figures + 1, pages  # and at least one page of tables


def test_errors(dbs, tmp_path, cli, monkeypatch):
    db, _ = dbs["one"]
    missing = tmp_path / "missing.db"
    rc, _, err = cli("report", missing, "--out", tmp_path / "r.html")
    assert rc == 1 and "does not exist" in err and not missing.exists()
    rc, _, err = cli("report", db, "--run", 99, "--out", tmp_path / "r.html")
    assert rc == 1 and "No run with id 99" in err and "stored runs: 1, 2" in err
    rc, _, err = cli("report", db, "--out", tmp_path / "r.txt")
    assert rc == 1 and "*.html or *.pdf" in err
    rc, _, err = cli("report", db, "--out", tmp_path)
    assert rc == 1 and "is a folder" in err
    rc, _, err = cli("report", db, "--out", tmp_path / "no" / "r.html")
    assert rc == 1 and "does not exist; create it first" in err
    rc, _, err = cli("report", db, "--run", "x", "--out", tmp_path / "r.html")
    assert rc == 2 and "a run id is a whole number" in err
    rc, _, err = cli("report", db, "--out", tmp_path / "r.html", "--format", "svg")
    assert rc == 2
    with pytest.raises(dabc.InputError, match="fmt must be one of html, pdf"):
        dabc.viz.write_report(db, tmp_path / "r.html", fmt="docx")
    with pytest.raises(dabc.InputError, match="needs a History or a database"):
        dabc.viz.write_report(42, tmp_path / "r.html")
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now fails
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    rc, _, err = cli("report", db, "--out", tmp_path / "r.html")
    assert rc == 1 and 'pip install "dabc[viz]"' in err
    assert not list(tmp_path.glob("r.html*"))


def test_a_run_without_generations(tmp_path, cli):
    def failing(params, rng):
        raise RuntimeError("boom")

    db = tmp_path / "failed.db"
    abc = dabc.ABCSMC(failing, dabc.Prior(a=dabc.RV("norm", 0, 1)), population_size=10,
                      sampler=dabc.SingleCoreSampler(), seed=1, progress=False)
    with pytest.raises(dabc.DabcError):
        abc.run({"y": 1.0}, db=str(db), max_generations=2)
    rc, _, err = cli("report", db, "--out", tmp_path / "r.html")
    assert rc == 1 and "stored no generation (status failed" in err
    assert not (tmp_path / "r.html").exists()


def test_no_password_in_a_postgres_report(pg_url, tmp_path, cli):
    url = sa.engine.make_url(pg_url)
    if not url.password:
        pytest.fail("DABC_TEST_POSTGRES_URL has no password, so masking cannot be tested; "
                    "run the tests with 'bash scripts/test.sh' (its URL has one).",
                    pytrace=False)
    h = viz_runs.one_model_run(pg_url, population=50, generations=2)
    h.engine.dispose()
    out = tmp_path / "pg.html"
    rc, _, err = cli("report", pg_url, "--out", out)
    assert rc == 0, err
    text = out.read_text(encoding="utf-8")
    assert f":{url.password}@" not in text and ":***@" in text
    assert dict(Page(text).tables["config-table"])["database"].startswith(
        f"postgresql+{url.drivername.split('+')[-1]}://{url.username}:***@")


def test_a_run_stored_by_dabc_0_1_0_is_reported_without_unpickling(tmp_path, cli):
    """The stored-run fixture's configuration is a pickle: the report says so instead of
    running it, and still draws the plots."""
    import shutil

    db = tmp_path / "legacy.db"
    shutil.copyfile(Path(__file__).parent / "data" / "stored_run_v0.1.0.db", db)
    out = tmp_path / "legacy.html"
    rc, _, err = cli("report", db, "--out", out)
    assert rc == 0, err
    page = Page(out.read_text(encoding="utf-8"))
    config = dict(page.tables["config-table"])
    assert "pickled format of dabc 0.1.0" in config["configuration"]
    assert "distance" not in config and "stored code" not in config
    assert len(page.tables["generation-table"]) == 3
    functions = {img["data-function"] for img in page.images}
    assert {"plot_epsilons", "plot_model_probabilities", "plot_kde_1d",
            "plot_kde_matrix"} <= functions and "plot_distance_weights" not in functions


def test_a_model_that_died_out_is_named_not_plotted(tmp_path, cli):
    h = viz_runs.dying_model_run(str(tmp_path / "dying.db"))
    h.engine.dispose()
    out = tmp_path / "dying.html"
    rc, _, err = cli("report", tmp_path / "dying.db", "--out", out)
    assert rc == 0, err
    text = out.read_text(encoding="utf-8")
    page = Page(text)
    assert [r[0] for r in page.tables["posterior-table"]] == ["narrow"]
    assert [img["data-function"] for img in page.images].count("plot_credible_intervals") == 1
    assert "No posterior plots of model 1 (&#x27;far_off&#x27;): it has no particles in " \
           "generation 2." in text
    assert page.tables["generation-table"][-1][-1] == "0.000"
