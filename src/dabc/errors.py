"""Exceptions raised by dabc, each with a message that says what to do next."""


class DabcError(Exception):
    """Base class of all dabc errors."""


class InputError(DabcError, ValueError):
    """A prior, model, distance, observed value or database argument is unusable."""


class ModelError(DabcError):
    """The model failed (raised or returned NaN) in too many evaluations."""


class WorkerError(DabcError):
    """Worker processes died repeatedly or could not be started."""
