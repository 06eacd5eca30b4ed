"""ConcurrentFutureSampler: DYN sampling over any ``concurrent.futures.Executor``."""

from __future__ import annotations

from concurrent.futures import FIRST_COMPLETED, Executor, wait
from concurrent.futures.process import BrokenProcessPool

from .._compat.futures import executor_workers
from ..errors import WorkerError
from .base import Sampler, SampleResult, WorkRequest
from .scheduling import check_batch_size, make_scheduler
from .worker import run_task


class ConcurrentFutureSampler(Sampler):
    """DYN over an executor (thread pool, process pool, or a cluster's executor).

    Parameters
    ----------
    executor : concurrent.futures.Executor
        Where tasks run. It stays open: the caller owns it.
    batch_size : int or "auto", default "auto"
        Evaluation ids per task; ``"auto"`` sizes tasks from measured simulation times.
    max_in_flight : int, optional
        Tasks submitted at once; default twice the executor's workers.

    Raises
    ------
    ValueError
        If ``batch_size`` is neither a positive integer nor ``"auto"``.

    Examples
    --------
    A thread pool (the model must then release the GIL to gain anything; a process pool or
    a cluster's executor runs Python models in parallel):

    >>> from concurrent.futures import ThreadPoolExecutor
    >>> import dabc
    >>> def model(params, rng):
    ...     return {"y": rng.normal(params["mu"], 1.0)}
    >>> with ThreadPoolExecutor(2) as pool:
    ...     sampler = dabc.ConcurrentFutureSampler(pool)
    ...     abc = dabc.ABCSMC(model, dabc.Prior(mu=dabc.RV("norm", 0, 1)),
    ...                       population_size=50, sampler=sampler, seed=1, progress=False)
    ...     history = abc.run({"y": 0.5}, db="sqlite:///futures.db", max_generations=2)
    >>> history.n_populations
    2
    """

    dynamic = True

    def __init__(self, executor: Executor, batch_size: int | str = "auto",
                 max_in_flight: int | None = None):
        self._fixed_size = check_batch_size(batch_size)
        self.executor, self.batch_size = executor, batch_size
        self.max_in_flight = max_in_flight or 2 * executor_workers(executor)

    def sample(self, request: WorkRequest) -> SampleResult:
        """Keep ``max_in_flight`` tasks submitted until the generation is complete.

        Raises
        ------
        dabc.WorkerError
            If a process pool's worker died (the executor is then unusable).
        """
        sched = make_scheduler(request, dynamic=True, batch_size=self._fixed_size)
        payload, key = request.payload, request.work.token.encode()
        in_flight = {}
        try:
            while not sched.done:
                while len(in_flight) < self.max_in_flight:
                    task = sched.next_task(self.max_in_flight // 2)
                    if task is None:
                        break
                    in_flight[self.executor.submit(run_task, payload, task, key)] = task
                finished, _ = wait(in_flight, return_when=FIRST_COMPLETED)
                for fut in finished:
                    task = in_flight.pop(fut)
                    _, batch = fut.result()
                    sched.add(task, batch)
                for fut, task in list(in_flight.items()):
                    if not sched.wanted(task) and fut.cancel():
                        del in_flight[fut]
        except BrokenProcessPool as exc:
            raise WorkerError("a worker process of the executor died and the executor cannot "
                              "be used any more; MulticoreEvalParallelSampler recovers from "
                              "dead workers by itself.") from exc
        finally:
            for fut in in_flight:
                fut.cancel()
        return sched.result()
