"""The exceptions of :mod:`dabc.stan`.

They live in a module of their own, at the bottom of ``dabc.stan``'s import order, so that every
other module of the package (the backends, the artifact store, fits, fleets) can raise them
without importing each other. All three are :class:`dabc.DabcError`, so ``except
dabc.DabcError`` catches every dabc failure, Stan's included.
"""

from __future__ import annotations

from ..errors import DabcError, InputError


class StanEnvironmentError(InputError):
    """A compiled Stan artifact does not fit the environment it was sent to.

    The message names each field that differs (e.g. ``python version: built with '3.11.7',
    here '3.12.1'``), or says that the artifact never reached this process.
    """


class StanDataError(InputError):
    """Stan rejected the data given for a model (missing variable, bad size, broken constraint).

    The message is Stan's own, without the temporary file names it saw.
    """


class StanFitError(DabcError, RuntimeError):
    """Stan failed while sampling (e.g. initialisation failed); the message is Stan's.

    Also a :class:`RuntimeError`, as it was before it became a :class:`dabc.DabcError`.
    """


__all__ = ["StanDataError", "StanEnvironmentError", "StanFitError"]
