"""Exceptions raised by dabc, each with a message that says what to do next."""


class DabcError(Exception):
    """Base class of all dabc errors.

    Every exception dabc raises on purpose derives from it, and its message says what to do
    next; the command line exits with status 1 on one. Errors of the Python libraries dabc
    calls (a ``TypeError`` of a wrong call, an error of the database driver) pass unchanged.

    Examples
    --------
    >>> import dabc
    >>> try:
    ...     dabc.RV("no_such_distribution")
    ... except dabc.DabcError as exc:
    ...     print(type(exc).__name__)
    InputError
    """


class InputError(DabcError, ValueError):
    """A prior, model, distance, observed value or database argument is unusable.

    Raised before any simulation runs where it can be (for example an unknown distribution,
    observed statistics whose names or shapes differ from the model's, a database URL that
    cannot be opened). It is also a ``ValueError``, so code that catches that keeps working.
    """


class ModelError(DabcError):
    """The model failed (raised or returned NaN) in too many evaluations.

    A generation stops with it when the share of failed evaluations exceeds
    ``ABCSMC(max_failure_rate=...)``; the message names the model and holds the traceback of
    its first failure. Fix the model, or raise ``max_failure_rate`` if failures are expected.
    """


class WorkerError(DabcError):
    """Worker processes died repeatedly, could not be started, or none were available.

    Raised by the samplers: worker processes that keep dying within one generation, a worker
    that failed outside the model, a Dask or Redis cluster with no live worker for longer than
    the sampler's ``no_worker_timeout``. The message says what was seen and where to look.
    """
