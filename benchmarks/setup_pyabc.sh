#!/usr/bin/env bash
# Make pyABC 0.13 importable for benchmarks/pyabc_runner.py; print the interpreter to use.
#
#   bash benchmarks/setup_pyabc.sh              # -> /work/main/.venv-pyabc/bin/python
#
# pyABC goes into its own virtualenv (.venv-pyabc, gitignored), never into the main
# environment: pyabc 0.13.0 would resolve there without downgrades, but it drags in ~35 extra
# packages (matplotlib, scikit-learn, ipykernel, gitpython, ...) that dabc's optional extras
# and tests would then silently see. The shared libraries are pinned to the versions of the
# main environment (numpy, scipy, pandas, sqlalchemy, cloudpickle, dask, redis), so both
# sides of a benchmark run on the same stack. Idempotent: does nothing if the venv already
# holds exactly these pins. Only PyPI (pip's configured indexes) is used.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${PYABC_VENV:-$ROOT/.venv-pyabc}"
BASE_PYTHON="${PYABC_BASE_PYTHON:-python3}"

PINS="
pyabc==0.13.0
numpy==2.4.6
scipy==1.17.1
pandas==3.1.1
SQLAlchemy==2.1.9
cloudpickle==3.1.2
dask==2026.8.0
distributed==2026.8.0
redis==8.1.0
psutil==7.2.2
python-dateutil==2.9.0.post0
asttokens==3.0.2
click==8.5.1
comm==0.2.3
contourpy==1.3.3
cycler==0.12.1
debugpy==1.8.22
executing==2.3.0
fonttools==4.68.0
fsspec==2026.9.0
gitdb==4.0.12
GitPython==3.2.1
importlib_metadata==10.2.0
ipykernel==7.4.0
ipython==9.18.1
ipython_pygments_lexers==1.1.1
jabbar==0.0.16
jedi==0.20.1
Jinja2==3.1.6
joblib==1.6.0
jupyter_client==8.10.0
jupyter_core==5.9.1
kiwisolver==1.5.1
lazy-importer==0.1.0
locket==1.0.0
MarkupSafe==3.0.4
matplotlib==3.11.2
matplotlib-inline==0.2.2
msgpack==1.2.4
narwhals==2.29.0
nest-asyncio2==1.7.4
packaging==26.3
parso==0.8.7
partd==1.4.2
pexpect==4.9.0
pillow==13.0.0
platformdirs==4.14.7
prompt_toolkit==3.0.53
ptyprocess==0.7.0
pure_eval==0.2.4
Pygments==2.21.0
pyparsing==3.3.3
PyYAML==6.0.3
pyzmq==27.3.0
scikit-learn==1.9.1
six==1.17.0
smmap==5.0.3
sortedcontainers==2.4.0
stack-data==0.6.3
tblib==3.2.2
threadpoolctl==3.8.0
toolz==1.2.0
tornado==6.6.1
traitlets==5.16.1
typing_extensions==4.16.0
wcwidth==0.9.4
zict==3.0.0
zipp==4.1.2
"

PY="$VENV/bin/python"
STAMP="$VENV/.pyabc-pins"

if [[ -x "$PY" && -f "$STAMP" ]] && [[ "$(cat "$STAMP")" == "$(printf '%s' "$PINS")" ]] \
    && "$PY" -c 'import pyabc, sys; sys.exit(pyabc.__version__ != "0.13.0")' 2>/dev/null; then
    echo "$PY"
    exit 0
fi

if [[ ! -x "$PY" ]]; then
    "$BASE_PYTHON" -m venv "$VENV" >&2
fi
# shellcheck disable=SC2086  # word splitting of the pin list is intended
"$PY" -m pip install --quiet --disable-pip-version-check $PINS >&2
"$PY" -m pip check >&2
"$PY" -c 'import pyabc, dask.distributed, redis; assert pyabc.__version__ == "0.13.0"' >&2
command -v "$VENV/bin/abc-redis-worker" >/dev/null
printf '%s' "$PINS" > "$STAMP"
echo "$PY"
