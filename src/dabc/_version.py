"""The version of dabc, in a module of its own.

Modules anywhere in the package import it from here (``from .._version import __version__``),
never from the package root: importing ``dabc`` from below would run ``dabc/__init__.py``, which
imports the engine and the samplers, and would tie the bottom layer to the top. The same number
is written in ``pyproject.toml``; ``tests/test_layers.py`` checks that the two agree.
"""

__version__ = "0.1.0"
