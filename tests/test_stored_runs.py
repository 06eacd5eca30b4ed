"""Stored runs survive refactors, and loading them runs no code the caller did not trust.

``tests/data/stored_run_v0.1.0.db`` was written by dabc 0.1.0 (``tests/data/make_stored_run.py``
says how); it must load and resume bit-identically with every later dabc. Runs written today
(the explicit JSON format of ``dabc.engine.config``) must round-trip for every built-in
component. The database is edited with ``sqlite3`` below only to play a damaged, newer or
malicious database.
"""

from __future__ import annotations

import base64
import json
import logging
import pickle
import shutil
import sqlite3
import sys
from pathlib import Path

import numpy as np
import pytest

import dabc
from dabc.engine.config import StoredCode, read_config
from determinism import FIELDS, assert_same, snapshot

DATA = Path(__file__).parent / "data"
FIXTURE = DATA / "stored_run_v0.1.0.db"
EXPECTED = DATA / "stored_run_v0.1.0_expected.npz"


@pytest.fixture
def fixture_url(tmp_path, monkeypatch):
    """A copy of the v0.1.0 fixture (never the committed file), its models importable."""
    monkeypatch.syspath_prepend(str(DATA))
    db = tmp_path / FIXTURE.name
    shutil.copyfile(FIXTURE, db)
    return f"sqlite:///{db}"


def _expected_snapshot() -> dict:
    e = np.load(EXPECTED)
    t = e["t"]
    arrays = []
    for g in t:
        models = sorted({int(k.split("_")[1][1:]) for k in e.files if k.startswith(f"g{g}_")})
        arrays.append({m: {f: e[f"g{g}_m{m}_{f}"] for f in FIELDS} for m in models})
    return {"t": t, "epsilon": e["epsilon"], "n_simulations": e["n_simulations"],
            "model_probabilities": e["model_probabilities"], "arrays": arrays}


# --- (a) the run stored by dabc 0.1.0 ----------------------------------------------------------
def _scheme1_abc() -> dabc.ABCSMC:
    """The fixture's run started today under dabc 0.1.0's random stream scheme (1): new runs
    use scheme 2 (dabc.engine.work), whose populations differ from 0.1.0's."""
    import make_stored_run as made

    abc = made.make_abc()
    abc._stream_scheme = 1
    return abc


def _uninterrupted_here(tmp_path) -> dict:
    """The fixture's 6-generation run, uninterrupted, computed on this machine (scheme 1)."""
    import make_stored_run as made

    url = f"sqlite:///{tmp_path / 'uninterrupted.db'}"
    return snapshot(_scheme1_abc().run(made.OBSERVED, db=url, max_generations=made.TOTAL))


def test_v010_fixture_loads_and_resumes_bit_identically(fixture_url, caplog):
    expected = _expected_snapshot()
    assert dabc.History(fixture_url).max_t == 2
    assert_same(snapshot(dabc.History(fixture_url)), expected, generations=3)

    with caplog.at_level(logging.INFO, logger="dabc.engine"):
        abc = dabc.ABCSMC.load(fixture_url, sampler=dabc.SingleCoreSampler(), progress=False)
    assert any("unpickling stored code" in r.getMessage() and r.name == "dabc.engine"
               for r in caplog.records)
    # rebuilt from the named fields of 0.1.0, not from its attributes
    assert [m.name for m in abc.models] == ["shift", "scaled"]
    assert type(abc.distance) is dabc.AdaptivePNormDistance and abc.distance.scale == "std"
    assert type(abc.epsilon) is dabc.QuantileEpsilon and abc.epsilon.alpha == 0.4
    assert [t.bandwidth for t in abc.transitions] == ["scott", "scott"]
    assert abc.model_prior.tolist() == [0.6, 0.4] and abc.stay_probability == 0.8

    h = abc.run(max_generations=6)
    assert h.n_populations == 6
    # The reference, and generation 2's stored state (adaptive distance weights, the fitted
    # transitions) the run resumes from, were computed on another machine: numpy's and
    # OpenBLAS's kernels (chosen per CPU) may round in the last bits differently there. The
    # accepted ids and simulation counts are exact; floats agree to 1e-9.
    assert_same(snapshot(h), expected, rtol=1e-9)
    # the resumed generations are stored in today's format
    assert json.loads(h.state(5))["format"] == "dabc-state"


def test_v010_fixture_is_refused_without_trust(fixture_url):
    with pytest.raises(dabc.InputError, match="holds code that would run.*pickled format of "
                       "dabc 0.1.0.*trust=True"):
        dabc.ABCSMC.load(fixture_url, trust=False)
    with pytest.raises(dabc.InputError, match="pickled format of dabc 0.1.0"):
        read_config(dabc.History(fixture_url))


def test_v010_fixture_without_its_model_module_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.delitem(sys.modules, "stored_run_model", raising=False)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if Path(p or ".").resolve() != DATA])
    db = tmp_path / FIXTURE.name
    shutil.copyfile(FIXTURE, db)
    with pytest.raises(dabc.InputError, match="stored_run_model.*not importable here.*"
                       "PYTHONPATH"):
        dabc.ABCSMC.load(f"sqlite:///{db}")


def test_todays_format_resumes_the_fixture_run_as_v010_ran_it(fixture_url, tmp_path):
    """The fixture's run (two models, model selection), stored today and resumed."""
    import make_stored_run as made

    url = f"sqlite:///{tmp_path / 'today.db'}"
    h = _scheme1_abc().run(made.OBSERVED, db=url, max_generations=made.STORED)
    assert json.loads(h.config)["format"] == "dabc-config"
    assert json.loads(h.config)["stream_scheme"] == 1  # and the resume below keeps it
    h = dabc.ABCSMC.load(url, sampler=dabc.SingleCoreSampler()).run(max_generations=made.TOTAL)
    assert_same(snapshot(h), _expected_snapshot(), rtol=1e-9)  # made on another machine
    # stored and resumed on this machine: bit-identical to an uninterrupted run here
    assert_same(snapshot(h), _uninterrupted_here(tmp_path))


# --- (b) runs written today round-trip -----------------------------------------------------------
def two_stats(p, rng):
    noise = rng.standard_normal(3)
    return {"y": p["x"] + 0.3 * noise[0], "z": 50.0 * p["x"] + 20.0 * noise[1:]}


def abs_gap(x, x0):
    return abs(x["y"] - x0["y"]) + 0.01 * float(np.abs(x["z"] - x0["z"]).sum())


OBS = {"y": 0.8, "z": np.array([40.0, 45.0])}
SEED = 777


def _ridge():
    from sklearn.linear_model import Ridge

    return Ridge(alpha=1.0)


COMPONENTS = {
    "pnorm": lambda: {"distance": dabc.PNormDistance(p=1, weights={"z": [0.02, 0.03]})},
    "pnorm_inf": lambda: {"distance": dabc.PNormDistance(p=np.inf)},
    "adaptive": lambda: {"distance": dabc.AdaptivePNormDistance(scale="mad")},
    "function": lambda: {"distance": dabc.FunctionDistance(abs_gap)},
    "callable": lambda: {"distance": abs_gap},
    "learned": lambda: {"distance": dabc.LearnedStatisticsDistance(
        regressor=_ridge(), fit_generations=[0, 1],
        initial=dabc.AdaptivePNormDistance(p=1))},
    "quantile": lambda: {"epsilon": dabc.QuantileEpsilon(alpha=0.3, multiplier=1.1)},
    "median": lambda: {"epsilon": dabc.MedianEpsilon(initial_epsilon=60.0)},
    "constant": lambda: {"epsilon": dabc.ConstantEpsilon(30.0)},
    "list": lambda: {"epsilon": dabc.ListEpsilon([np.inf, 40.0, 25.0, 18.0, 15.0])},
    "mvn": lambda: {"transition": dabc.MultivariateNormalTransition(scaling=1.2)},
    "local": lambda: {"transition": dabc.LocalTransition(k=15)},
}
# the code fields of each case beyond the model function
CODE = {"function": ["distance.params.fn"], "callable": ["distance.params.fn"],
        "learned": ["distance.params.regressor"]}


def _abc(case: str) -> dabc.ABCSMC:
    return dabc.ABCSMC(two_stats, dabc.Prior(x=dabc.RV("norm", 0, 2)), population_size=100,
                       sampler=dabc.SingleCoreSampler(), seed=SEED, progress=False,
                       **COMPONENTS[case]())


@pytest.mark.timeout(120)
@pytest.mark.parametrize("case", sorted(COMPONENTS))
def test_new_run_round_trips(case, tmp_path):
    ref = _abc(case).run(OBS, db=f"sqlite:///{tmp_path / 'ref.db'}", max_generations=4)
    assert ref.n_populations == 4
    url = f"sqlite:///{tmp_path / 'part.db'}"
    assert _abc(case).run(OBS, db=url, max_generations=2).n_populations == 2

    cfg = read_config(dabc.History(url))
    assert cfg.fields["format"] == "dabc-config" and cfg.fields["version"] == 1
    assert [c.field for c in cfg.code] == ["models[0].function"] + CODE.get(case, [])
    assert all(isinstance(c, StoredCode) and c.size > 0 for c in cfg.code)

    h = dabc.ABCSMC.load(url, sampler=dabc.SingleCoreSampler()).run(max_generations=4)
    assert_same(snapshot(h), snapshot(ref))


def test_config_names_every_field(tmp_path):
    url = f"sqlite:///{tmp_path / 'r.db'}"
    _abc("adaptive").run(OBS, db=url, max_generations=1)
    doc = json.loads(dabc.History(url).config)
    assert {"format", "version", "written_by", "population_size", "seed", "model_prior",
            "stay_probability", "max_failure_rate", "models", "priors", "distance", "epsilon",
            "transitions"} <= set(doc)
    assert doc["priors"] == [[{"parameter": "x", "distribution": "norm", "args": [0, 2],
                               "kwargs": {}}]]
    assert doc["models"][0]["name"] == "two_stats"
    assert set(doc["models"][0]["function"]) == {"$code"}
    assert doc["distance"]["$component"]["name"] == "AdaptivePNormDistance"
    assert doc["epsilon"]["$component"]["params"]["initial_epsilon"] == {"$float": "inf"}
    fields = read_config(dabc.History(url)).fields
    assert fields["distance"]["params"] == {"p": 2.0, "scale": "mad"}
    np.testing.assert_array_equal(fields["distance"]["state"]["w"], np.ones(3))
    assert fields["models"][0]["function"] is None  # code is listed, never unpickled


class Halved(dabc.MedianEpsilon):
    """A user subclass of a built-in: stored as code (its behaviour is the user's)."""

    def next(self, t, distances, weights):
        return 0.5 * super().next(t, distances, weights)


def test_user_subclass_is_stored_as_code_and_round_trips(tmp_path):
    def abc():
        return dabc.ABCSMC(two_stats, dabc.Prior(x=dabc.RV("norm", 0, 2)), epsilon=Halved(),
                           population_size=80, sampler=dabc.SingleCoreSampler(), seed=SEED,
                           progress=False)

    ref = abc().run(OBS, db=f"sqlite:///{tmp_path / 'ref.db'}", max_generations=3)
    url = f"sqlite:///{tmp_path / 'part.db'}"
    abc().run(OBS, db=url, max_generations=1)
    assert "epsilon" in [c.field for c in read_config(dabc.History(url)).code]
    h = dabc.ABCSMC.load(url, sampler=dabc.SingleCoreSampler()).run(max_generations=3)
    assert_same(snapshot(h), snapshot(ref))


# --- (c) trust=False -----------------------------------------------------------------------------
def _set(url: str, column: str, value: bytes, table: str = "dabc_runs") -> None:
    with sqlite3.connect(url.removeprefix("sqlite:///")) as con:
        con.execute(f"UPDATE {table} SET {column} = ?", (value,))


def _edit_config(url: str, edit) -> None:
    doc = json.loads(dabc.History(url).config)
    edit(doc)
    _set(url, "config", json.dumps(doc).encode())


def test_without_trust_stored_models_are_refused_and_supplied_ones_used(tmp_path):
    ref = _abc("adaptive").run(OBS, db=f"sqlite:///{tmp_path / 'ref.db'}", max_generations=3)
    url = f"sqlite:///{tmp_path / 'part.db'}"
    _abc("adaptive").run(OBS, db=url, max_generations=2)
    with pytest.raises(dabc.InputError, match=r"holds code that would run.*models\[0\]"
                       r"\.function.*read_config.*models="):
        dabc.ABCSMC.load(url, trust=False)

    # the stored model code is never unpickled: garbage there does not matter
    def garble(doc):
        doc["models"][0]["function"]["$code"]["data"] = base64.b64encode(b"junk").decode()
    _edit_config(url, garble)
    with pytest.raises(dabc.InputError, match="models= gives 2 functions"):
        dabc.ABCSMC.load(url, trust=False, models=[two_stats, two_stats])
    abc = dabc.ABCSMC.load(url, sampler=dabc.SingleCoreSampler(), trust=False,
                           models=[two_stats])
    assert_same(snapshot(abc.run(max_generations=3)), snapshot(ref))


def test_without_trust_a_code_distance_is_refused_even_with_models(tmp_path):
    url = f"sqlite:///{tmp_path / 'r.db'}"
    _abc("function").run(OBS, db=url, max_generations=1)
    with pytest.raises(dabc.InputError, match=r"field distance\.params\.fn is code"):
        dabc.ABCSMC.load(url, trust=False, models=[two_stats])


class _Evil:
    """Unpickling this creates the file: stands for any code a crafted database could run."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return Path.touch, (self.marker,)


def test_crafted_database_runs_no_code_without_trust(tmp_path):
    url = f"sqlite:///{tmp_path / 'r.db'}"
    _abc("adaptive").run(OBS, db=url, max_generations=2)
    marker = tmp_path / "code-ran"
    evil = pickle.dumps(_Evil(marker))

    def plant(doc):  # code where a component should be named
        doc["epsilon"] = {"$code": {"type": "builtins.object", "pickle": "cloudpickle",
                                    "data": base64.b64encode(evil).decode()}}
    _edit_config(url, plant)
    with pytest.raises(dabc.InputError, match="field epsilon is code"):
        dabc.ABCSMC.load(url, trust=False, models=[two_stats])
    assert "epsilon" in [c.field for c in read_config(dabc.History(url)).code]
    assert not marker.exists()

    _set(url, "config", evil)  # a pickle instead of JSON: the legacy format
    with pytest.raises(dabc.InputError, match="pickled format of dabc 0.1.0"):
        dabc.ABCSMC.load(url, trust=False, models=[two_stats])
    assert not marker.exists()

    _set(url, "observed", evil)
    with pytest.raises(dabc.InputError, match="observed data refers to pathlib"):
        dabc.ABCSMC.load(url, trust=False, models=[two_stats])
    assert not marker.exists()


def test_without_trust_code_in_the_last_state_is_refused(tmp_path):
    url = f"sqlite:///{tmp_path / 'r.db'}"
    _abc("learned").run(OBS, db=url, max_generations=1)  # a fitted regressor in the state

    def plain(doc):  # a config without code, but the state still holds the fitted regressor
        doc["distance"]["$component"]["params"]["regressor"] = None
    _edit_config(url, plain)
    with pytest.raises(dabc.InputError, match=r"state of generation 0 holds code \(distance"):
        dabc.ABCSMC.load(url, trust=False, models=[two_stats])


# --- (d) what this dabc cannot know ------------------------------------------------------------
def test_newer_format_and_unknown_components_are_refused(tmp_path):
    url = f"sqlite:///{tmp_path / 'r.db'}"
    _abc("adaptive").run(OBS, db=url, max_generations=1)
    original = dabc.History(url).config

    _edit_config(url, lambda doc: doc.update(version=2, written_by="dabc 9.0"))
    for load in (lambda: dabc.ABCSMC.load(url), lambda: read_config(dabc.History(url))):
        with pytest.raises(dabc.InputError, match=r"newer dabc \(dabc 9.0, config format "
                           r"version 2\).*reads versions up to 1.*Upgrade dabc"):
            load()

    _set(url, "config", original)
    _edit_config(url, lambda doc: doc["distance"]["$component"].update(name="FancyDistance"))
    with pytest.raises(dabc.InputError, match="component 'FancyDistance', which this dabc does "
                       "not know.*AdaptivePNormDistance.*Upgrade dabc"):
        dabc.ABCSMC.load(url)

    _set(url, "config", original)
    _edit_config(url, lambda doc: doc.update(seed={"$quaternion": [1, 0, 0, 0]}))
    with pytest.raises(dabc.InputError, match="tag '\\$quaternion', unknown to this dabc"):
        dabc.ABCSMC.load(url)

    _set(url, "config", original)
    _edit_config(url, lambda doc: doc.pop("population_size"))
    with pytest.raises(dabc.InputError, match="damaged or incomplete.*population_size"):
        dabc.ABCSMC.load(url)

    _set(url, "config", original)
    state = json.loads(dabc.History(url).state(0))
    state["version"] = 3
    _set(url, "state", json.dumps(state).encode(), table="dabc_generations")
    with pytest.raises(dabc.InputError, match="generation state format version 3"):
        dabc.ABCSMC.load(url).run(max_generations=2)
