"""CmdStanPy backend: CmdStan's model executable as the artifact.

Used when CmdStan is installed (``$CMDSTAN`` or ``cmdstanpy.cmdstan_path()``). The executable is
compiled once with ``CmdStanModel(stan_file=...)``; on a worker it is written into the worker's
cache and wrapped with the public ``CmdStanModel(exe_file=...)``: no private attributes are
patched.

TBB: CmdStan links the executable to Intel TBB's shared library with an absolute run path
inside the CmdStan installation (``<cmdstan>/stan/lib/stan_math/lib/tbb``). A worker without
CmdStan at that same path cannot start the executable ("libtbb.so.2: cannot open shared object
file"). ``ldd`` shows the linkage; it is recorded at compile time and checked on every worker
before the first fit, with an explanation instead of a failed process start.
"""

from __future__ import annotations

import hashlib
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from ..errors import InputError
from .errors import StanFitError

ENVIRONMENT_NOTE = (
    "A CmdStan executable is only valid on the same platform, and it finds Intel TBB through "
    "an absolute path inside the CmdStan installation where it was compiled: install the same "
    "CmdStan version at the same path on the workers (or add its stan/lib/stan_math/lib/tbb "
    "folder to LD_LIBRARY_PATH there)."
)

_NAMES = {"delta": "adapt_delta", "max_depth": "max_treedepth", "stepsize": "step_size"}
_STATS_NAMES = {
    "lp__": "lp", "accept_stat__": "acceptance_rate", "stepsize__": "step_size",
    "treedepth__": "tree_depth", "n_leapfrog__": "n_steps", "divergent__": "diverging",
    "energy__": "energy",
}


def _cmdstan_path() -> str | None:
    try:
        import cmdstanpy

        return cmdstanpy.cmdstan_path()
    except Exception:  # noqa: BLE001 - cmdstanpy raises ValueError, or is not installed
        return None


def available() -> bool:
    """Whether CmdStanPy and a CmdStan installation are present."""
    return _cmdstan_path() is not None


def _require() -> str:
    path = _cmdstan_path()
    if path is None:
        raise InputError(
            "CmdStan is not installed (CmdStanPy could not find it through $CMDSTAN or "
            "~/.cmdstan). Install it with 'python -m cmdstanpy.install_cmdstan', or use the "
            "httpstan backend (StanModel(..., backend='httpstan'), from 'pip install pystan')."
        )
    return path


def tbb_links(ldd_output: str) -> dict[str, str | None]:
    """TBB libraries named in ``ldd`` output and the absolute path each resolves to (None when
    ldd says "not found")."""
    links: dict[str, str | None] = {}
    for line in ldd_output.splitlines():
        m = re.match(r"\s*(libtbb[^\s]*)\s*=>\s*(not found|\S+)", line)
        if m:
            links[m.group(1)] = None if m.group(2) == "not found" else m.group(2)
    return links


def _ldd(exe: Path) -> str:
    if shutil.which("ldd") is None:
        return ""
    proc = subprocess.run(["ldd", str(exe)], capture_output=True, text=True)
    return proc.stdout


def environment() -> dict:
    """What a CmdStan executable depends on: platform, CmdStan version and path (TBB lives
    there)."""
    path = _cmdstan_path()
    return {
        "backend": "cmdstanpy",
        "platform": f"{sys.platform} {platform.machine()}",
        "cmdstan path (TBB run path)": path,
        "cmdstan version": os.path.basename(path or ""),
    }


def model_id(code: str) -> str:
    """Cache key: the program with the CmdStan installation and platform."""
    h = hashlib.blake2b(digest_size=8)
    h.update(code.encode())
    h.update(repr(sorted(environment().items())).encode())
    return h.hexdigest()


def stanc(code: str, timeout: float = 120.0) -> str:
    """Check ``code`` with CmdStan's stanc; returns warnings, raises ValueError(stanc's message)."""
    exe = Path(_require()) / "bin" / ("stanc.exe" if sys.platform == "win32" else "stanc")
    with tempfile.TemporaryDirectory(prefix="dabc-stanc-") as tmp:
        path = Path(tmp) / "program.stan"
        path.write_text(code, encoding="utf-8")
        proc = subprocess.run([str(exe), "--info", str(path)], capture_output=True, text=True,
                              timeout=timeout)
    stderr = proc.stderr.strip().replace(str(path), "program.stan")
    if proc.returncode != 0:
        raise ValueError(stderr)
    return stderr


def build(code: str, workdir: Path) -> Path:
    """Compile ``code`` with CmdStan into ``workdir``; returns the executable's path."""
    import cmdstanpy

    _require()
    src = workdir / "program.stan"
    src.write_text(code, encoding="utf-8")
    model = cmdstanpy.CmdStanModel(stan_file=str(src))
    return Path(model.exe_file)


def check_links(exe: Path) -> None:
    """Raise RuntimeError explaining a missing TBB library before CmdStan fails to start."""
    missing = [lib for lib, where in tbb_links(_ldd(exe)).items() if where is None]
    if missing:
        raise RuntimeError(
            f"The CmdStan executable {exe} cannot find {', '.join(missing)} on this machine. "
            + ENVIRONMENT_NOTE
        )


class Runtime:
    """A CmdStan executable wrapped by ``cmdstanpy.CmdStanModel(exe_file=...)``."""

    def __init__(self, path: Path):
        import cmdstanpy

        self.path = Path(path)
        os.chmod(self.path, 0o755)
        check_links(self.path)
        self.model = cmdstanpy.CmdStanModel(exe_file=str(self.path))

    def _run(self, data: dict, **kwargs):
        with tempfile.TemporaryDirectory(prefix="dabc-cmdstan-") as out:
            try:
                fit = self.model.sample(data=_data(data), output_dir=out, show_progress=False,
                                        show_console=False, parallel_chains=1, **kwargs)
            except (RuntimeError, ValueError) as exc:
                raise StanFitError(f"CmdStan failed: {exc}") from None
            variables = {k: np.asarray(v) for k, v in fit.stan_variables().items()}
            method = {k: np.asarray(v) for k, v in fit.method_variables().items()}
        return variables, method

    def param_names(self, data: dict) -> list[str]:
        """Quantities of the program, from one fixed-parameter draw."""
        variables, _ = self._run(data, chains=1, iter_sampling=1, fixed_param=True, seed=1)
        return list(variables)

    def sample(self, data: dict, chains: int, draws: int, warmup: int, seed: int,
               sampler_args: dict):
        """NUTS, chains one after another, one thread; arrays shaped ``(chain, draw, *dims)``."""
        args = {_NAMES.get(k, k): v for k, v in sampler_args.items()}
        variables, method = self._run(data, chains=chains, iter_sampling=draws,
                                      iter_warmup=warmup, seed=seed, threads_per_chain=1,
                                      **args)
        # stan_variables stacks chains one after another: (chains * draws, *dims)
        posterior = {k: v.reshape(chains, draws, *v.shape[1:]) for k, v in variables.items()}
        stats = {}
        for name, az_name in _STATS_NAMES.items():
            if name in method:  # method_variables are (draws, chains)
                arr = np.asarray(method[name]).T
                stats[az_name] = arr.astype(bool) if az_name == "diverging" else arr
        return posterior, stats, []

    def simulate(self, data: dict, init: dict, seed: int, draws: int = 1) -> dict:
        """Fixed-parameter sampling at ``init``; arrays shaped (draws, *dims)."""
        variables, _ = self._run(data, chains=1, iter_sampling=draws, fixed_param=True,
                                 inits=init, seed=seed)
        return {k: v.reshape(draws, *v.shape[1:]) for k, v in variables.items()}


def _data(data) -> dict:
    out = {}
    for k, v in dict(data or {}).items():
        arr = np.asarray(v)
        out[str(k)] = arr.astype(int) if arr.dtype == bool else arr
    return out
