"""Linear models fitted by SAGA on numpy arrays, scipy.sparse matrices and Dask arrays.

:class:`SAGARegressor` (least squares) and :class:`SAGAClassifier` (logistic regression) follow
the scikit-learn estimator contract; with a Dask array they run block-sequentially over its row
chunks, each chunk's gradient memory staying on the worker that holds the chunk.
"""

from .kernels import compile_counts
from .saga import SAGAClassifier, SAGARegressor

__all__ = ["SAGAClassifier", "SAGARegressor", "compile_counts"]
