"""Every exported name is documented: a docstring, and a numpydoc ``Parameters`` section when it
takes arguments.

The names are those of ``__all__`` in ``dabc``, ``dabc.samplers``, ``dabc.storage``,
``dabc.learn`` and ``dabc.stan`` (the last only with PyStan installed, as its tests). The Sphinx
site (``docs/``, built by ``scripts/test.sh`` with warnings as errors) checks that these
docstrings are valid reST; this test checks that they exist and describe the parameters.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import inspect
import warnings

import pytest
from numpydoc.docscrape import NumpyDocString

MODULES = ["dabc", "dabc.samplers", "dabc.storage", "dabc.learn", "dabc.stan"]
HAS_PYSTAN = importlib.util.find_spec("stan") is not None


def _exported():
    params = []
    for module_name in MODULES:
        if module_name == "dabc.stan" and not HAS_PYSTAN:
            params.append(pytest.param(module_name, None, id=module_name, marks=pytest.mark.skip(
                reason="PyStan is not installed (the stan extra)")))
            continue
        module = importlib.import_module(module_name)
        for name in module.__all__:
            params.append(pytest.param(module_name, name, id=f"{module_name}.{name}"))
    return params


def _own_doc(obj) -> str:
    """The object's own docstring: not one inherited from a base class, nor the signature that
    dataclasses and NamedTuples write when there is none."""
    doc = obj.__dict__.get("__doc__") if inspect.isclass(obj) else obj.__doc__
    doc = inspect.cleandoc(doc or "")
    if inspect.isclass(obj) and (dataclasses.is_dataclass(obj) or issubclass(obj, tuple)):
        if doc.startswith(f"{obj.__name__}(") and doc.endswith(")") and "\n" not in doc:
            return ""  # generated: "Batch(ids: numpy.ndarray, ...)"
    return doc


def _parameters(obj) -> list[str]:
    """Names of the parameters a caller passes (not self/cls); [] when there are none, when the
    object cannot be called directly (a Protocol) or has no introspectable signature (a class
    deriving from a built-in exception)."""
    if inspect.isclass(obj) and getattr(obj, "_is_protocol", False):
        return []
    try:
        signature = inspect.signature(obj)
    except (TypeError, ValueError):
        return []
    if (inspect.isclass(obj) and issubclass(obj, BaseException)
            and obj.__init__ is BaseException.__init__):
        return []
    return [p.name for p in signature.parameters.values()
            if p.name not in ("self", "cls") and not p.name.startswith("_")]


def _sections(doc: str) -> NumpyDocString:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an unknown or malformed section is a failure here
        return NumpyDocString(doc)


@pytest.mark.parametrize(("module_name", "name"), _exported())
def test_public_name_has_numpydoc_docstring(module_name, name):
    obj = getattr(importlib.import_module(module_name), name)
    where = f"{module_name}.{name}"
    if not (inspect.isclass(obj) or callable(obj) or inspect.ismodule(obj)):
        return  # a constant: its __doc__ is its type's
    doc = _own_doc(obj)
    assert doc, f"{where} has no docstring: write a numpydoc one (summary line, Parameters, ...)"
    try:
        sections = _sections(doc)
    except Exception as exc:  # numpydoc's parse errors and warnings
        pytest.fail(f"{where}: the docstring is not valid numpydoc: {exc}")
    if inspect.ismodule(obj):
        return
    wanted = _parameters(obj)
    if not wanted:
        return
    documented = _names(sections["Parameters"])
    if inspect.isclass(obj) and not documented and "__init__" in obj.__dict__:
        init_doc = inspect.cleandoc(obj.__init__.__doc__ or "")
        documented = _names(_sections(init_doc)["Parameters"]) if init_doc else []
    record = inspect.isclass(obj) and (dataclasses.is_dataclass(obj) or issubclass(obj, tuple))
    if record and not documented:  # a record's fields may be described as its attributes
        documented = _names(sections["Attributes"])
    assert documented, (f"{where} takes {', '.join(wanted)} but its docstring has no numpydoc "
                        "'Parameters' section: add one describing each"
                        + (" (or 'Attributes', for a dataclass)" if record else ""))
    missing = [p for p in wanted if p not in documented]
    assert not missing, (f"{where}: the docstring's Parameters section does not describe "
                         f"{', '.join(missing)}: add them")


def _names(params) -> list[str]:
    """Parameter names of a numpydoc section; ``x, y : float`` names two, ``**kwargs`` one."""
    return [n.strip().lstrip("*") for p in params for n in p.name.split(",")]


# -- help() that teaches: the names a newcomer meets first ------------------------------------
#: History's reading methods and properties; each states what it returns and shows its use.
HISTORY_READERS = ["all_runs", "get_all_populations", "get_distribution",
                   "get_model_probabilities", "get_weighted_distances", "get_statistics",
                   "get_arrays", "interruption", "events", "checkpoint_summary", "checkpoints",
                   "load_checkpoint", "check_generation", "unreadable_generations", "state",
                   "live_state", "live_states"]
HISTORY_PROPERTIES = ["config", "observed", "seed", "model_names", "param_names",
                      "stat_columns", "max_t", "n_populations", "total_simulations"]


def _teaching():
    import dabc
    from dabc.engine.distance import Distance
    from dabc.engine.epsilon import Epsilon
    from dabc.engine.transition import Transition
    from dabc.samplers import Sampler

    params = [pytest.param(dabc.ABCSMC, "class", id="ABCSMC"),
              pytest.param(dabc.ABCSMC.run, "function", id="ABCSMC.run"),
              pytest.param(dabc.ABCSMC.load, "function", id="ABCSMC.load"),
              pytest.param(dabc.History, "class", id="History")]
    params += [pytest.param(getattr(dabc.History, n), "function", id=f"History.{n}")
               for n in HISTORY_READERS if hasattr(dabc.History, n)]
    params += [pytest.param(getattr(dabc.History, n).fget, "property", id=f"History.{n}")
               for n in HISTORY_PROPERTIES]
    seen = set()
    for module in (dabc, importlib.import_module("dabc.samplers")):
        for name in module.__all__:
            obj = getattr(module, name)
            if (inspect.isclass(obj) and issubclass(obj, (Sampler, Distance, Epsilon, Transition))
                    and obj not in seen):
                seen.add(obj)
                params.append(pytest.param(obj, "class", id=name))
    return params


@pytest.mark.parametrize(("obj", "kind"), _teaching())
def test_teaching_docstrings_have_parameters_returns_and_examples(obj, kind):
    """ABCSMC, run, load, History (its reading methods and properties), and every sampler,
    distance, epsilon and transition class: Parameters (when it takes any), Returns (for a
    function or property that returns something) and an Examples section."""
    name = getattr(obj, "__qualname__", repr(obj))
    doc = _own_doc(obj)
    assert doc, f"{name} has no docstring"
    sections = _sections(doc)
    wanted = _parameters(obj) if kind != "property" else []
    if wanted:
        documented = sections["Parameters"]
        if not documented and kind == "class" and "__init__" in obj.__dict__:
            documented = _sections(inspect.cleandoc(obj.__init__.__doc__ or ""))["Parameters"]
        assert documented, f"{name}: add a 'Parameters' section ({', '.join(wanted)})"
    if kind in ("function", "property"):
        returns = inspect.signature(obj).return_annotation
        if returns not in (None, "None"):
            assert sections["Returns"] or sections["Yields"], (
                f"{name}: add a 'Returns' section saying what it returns ({returns})")
    assert sections["Examples"], f"{name}: add an 'Examples' section showing its use"


@pytest.mark.parametrize(("obj", "kind"), _teaching())
def test_teaching_examples_run(obj, kind, tmp_path, monkeypatch):
    """The examples not marked ``+SKIP`` run and print what they show (in a fresh folder:
    some write a small SQLite file)."""
    import doctest

    import dabc

    monkeypatch.chdir(tmp_path)
    finder = doctest.DocTestFinder(recurse=False)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    for test in finder.find(obj, globs={"dabc": dabc}):
        runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{getattr(obj, '__qualname__', obj)}: an example failed (above)"
