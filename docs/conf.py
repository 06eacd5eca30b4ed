"""Sphinx configuration of the dabc documentation.

Build it with ``sphinx-build -W --keep-going -b html docs docs/_build/html`` (``scripts/test.sh``
does, before the tests). Nothing here needs the network: no intersphinx inventories, no remote
themes, no downloaded assets.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
import sys

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "src")))

import dabc  # noqa: E402  (the installed or the source tree's dabc, never mocked)

project = "dabc"
author = "the dabc authors"
copyright = "the dabc authors"  # noqa: A001  (Sphinx's name for it)
release = dabc.__version__
version = release

extensions = [
    "myst_parser",
    "numpydoc",
    "sphinx.ext.autodoc",
    "sphinx.ext.viewcode",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]

# -- MyST: the user guide is the README, included --------------------------------------------
# The README links its own sections by GitHub's heading slugs (#quick-start); make them anchors.
myst_heading_anchors = 3
myst_enable_extensions = ["colon_fence"]

# -- autodoc and numpydoc --------------------------------------------------------------------
autodoc_default_options = {"members": True, "member-order": "bysource"}
autodoc_typehints = "signature"
autoclass_content = "class"
# Optional third-party libraries of the extras (learn, stan, dask) are imported for real when
# installed; only when one is missing is it replaced by a stand-in, so the API pages still
# build from a plain ``pip install -e ".[docs]"``. dabc itself is never mocked.
_OPTIONAL = ["numba", "sklearn", "dask", "distributed", "httpstan", "stan", "cmdstanpy",
             "arviz", "redis"]
autodoc_mock_imports = [m for m in _OPTIONAL if importlib.util.find_spec(m) is None]

numpydoc_show_class_members = False  # autodoc lists the members; no autosummary tables
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False
numpydoc_attributes_as_param_list = False

# -- HTML --------------------------------------------------------------------------------------
html_theme = "alabaster"
html_title = f"dabc {release}"
html_static_path: list[str] = []


# -- each public object on one page ------------------------------------------------------------
# ``dabc`` re-exports the samplers, ``History`` and the contract's ``Sampler``; documenting an
# object twice is a "duplicate object description" warning (an error under -W). So every object
# gets one home: the first module in this list that exports it (by ``__all__``, or, for a module
# without one, by defining it), and each page's automodule skips the objects whose home is
# another page. New names find their page by themselves; nothing here lists members.
_HOMES = [  # (module, its page), most specific first; one module a page
    ("dabc.samplers.base", "api/contract"),
    ("dabc", "api/dabc"),
    ("dabc.samplers", "api/samplers"),
    ("dabc.storage", "api/storage"),
    ("dabc.learn", "api/learn"),
    ("dabc.stan", "api/stan"),
]


def _exported(module_name: str) -> list[object]:
    module = importlib.import_module(module_name)
    names = getattr(module, "__all__", None)
    if names is None:
        names = [n for n, v in vars(module).items() if not n.startswith("_")
                 and getattr(v, "__module__", None) == module_name]
    return [getattr(module, n) for n in names]


_home_of: dict[int, tuple[str, str]] = {}


def _home(obj: object) -> tuple[str, str] | None:
    if not _home_of:
        from sphinx.ext.autodoc.mock import mock

        with mock(autodoc_mock_imports):  # the stand-ins autodoc itself imports with
            for module_name, page in reversed(_HOMES):  # the first listed wins
                for member in _exported(module_name):
                    _home_of[id(member)] = (module_name, page)
    return _home_of.get(id(obj))


def _resolve_lazy_exports(app) -> None:
    """Put each name of ``__all__`` that a module provides lazily (a module ``__getattr__``,
    as ``dabc.stan.PrivateCacheDir``, which imports distributed) into the module's namespace:
    autodoc looks members up in ``dir(module)`` and would silently leave such names out."""
    from sphinx.ext.autodoc.mock import mock

    with mock(autodoc_mock_imports):
        for module_name, _page in _HOMES:
            module = importlib.import_module(module_name)
            for name in getattr(module, "__all__", ()):
                if name not in vars(module):
                    setattr(module, name, getattr(module, name))


def _skip_member(app, what, name, obj, skip, options):
    if what == "module":
        home = _home(obj)
        if home is not None and home[1] != app.env.docname:
            return True  # documented on its home page
    elif what == "class" and not skip:
        # members a base class of another library adds (scikit-learn's set_*_request) are
        # that library's to document
        defined_in = getattr(inspect.unwrap(obj), "__module__", None) if callable(obj) else None
        if defined_in is not None and not defined_in.startswith("dabc"):
            return True
    return None


def setup(app):
    app.connect("builder-inited", _resolve_lazy_exports)
    app.connect("autodoc-skip-member", _skip_member)
