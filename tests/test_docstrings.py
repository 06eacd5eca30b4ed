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
