#!/usr/bin/env bash
# Install everything the test suite needs and run it: the one command for a fresh Debian 12
# machine (and for CI). Idempotent: what is already installed or running is left alone.
#
#   bash scripts/test.sh [pytest arguments...]
#
# - apt packages (only when missing): redis-server, postgresql, chromium (and a C tool chain
#   only if pip has to build something from source);
# - SLURM: scripts/start-slurm.sh installs (slurmctld, slurmd, slurm-client, munge) and
#   starts a single-node cluster on loopback, for the dabc.cluster tests;
# - PostgreSQL: starts a cluster (creating one if there is none), then creates the role and
#   database dabc_test (password dabc_test) through the local socket as the postgres user,
#   so it works with Debian's default peer authentication; the URL reaches the tests as
#   DABC_TEST_POSTGRES_URL (set it yourself to use another server and skip all of this);
# - a virtual environment of its own, .venv in the checkout (created with python3 -m venv when
#   missing; apt-get installs python3-venv if the interpreter has no venv module), unless the
#   script already runs inside one or PYTHON is set: PEP 668 is never overridden;
# - pip install -e ".[test,redis,dask,stan,learn,cluster]" into it (test includes docs);
# - the documentation: sphinx-build -W (warnings are errors) into docs/_build/html; a failure
#   stops the script here, before the tests;
# - python3 -m pytest; exits with pytest's status.
#
# Environment: PYTHON (the interpreter to install into and test with; default: .venv/bin/python,
# or the active virtual environment's python), DABC_TEST_VENV (default .venv), DABC_TEST_POSTGRES_URL, DABC_TEST_PG_CLUSTER (which
# local cluster to use, e.g. 15/main; default: the first online one), DABC_TEST_EXTRAS
# (default test,redis,dask,stan,learn,cluster: the tests import redis, distributed, pystan,
# numba and dask_jobqueue).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

BASE_PYTHON=python3
VENV=${DABC_TEST_VENV:-.venv}
EXTRAS=${DABC_TEST_EXTRAS:-test,redis,dask,stan,learn,cluster}
PG_ROLE=dabc_test
PG_PASSWORD=dabc_test
PG_DB=dabc_test

log() { printf '[test.sh] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

if [ "$(id -u)" -eq 0 ]; then
    SUDO=()
elif command -v sudo >/dev/null 2>&1; then
    SUDO=(sudo)
else
    SUDO=()  # apt-get and the PostgreSQL set-up will fail with a clear message if needed
fi

as_postgres() {  # run a command as the postgres OS user (peer authentication on the socket)
    if [ "$(id -u)" -eq 0 ]; then
        (cd / && runuser -u postgres -- "$@")
    else
        (cd / && sudo -u postgres "$@")
    fi
}

APT_UPDATED=0
apt_install() {  # apt_install PACKAGE...: install those not yet installed
    local missing=() p
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" \
            || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    command -v apt-get >/dev/null 2>&1 || die "apt-get not found; install ${missing[*]} by hand"
    if [ "$APT_UPDATED" -eq 0 ]; then
        log "apt-get update"
        "${SUDO[@]}" apt-get update -qq >/dev/null
        APT_UPDATED=1
    fi
    log "apt-get install ${missing[*]}"
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        --no-install-recommends "${missing[@]}" >/dev/null
}

# --- system packages -------------------------------------------------------------------
command -v redis-server >/dev/null 2>&1 || apt_install redis-server
# headless Chromium for the dashboard's browser tests (tests/test_dashboard_browser.py, driven
# by Playwright with executable_path=/usr/bin/chromium: Playwright's own browser download is
# never used)
command -v chromium >/dev/null 2>&1 || apt_install chromium
if [ -z "${DABC_TEST_POSTGRES_URL:-}" ]; then
    if ! command -v pg_ctlcluster >/dev/null 2>&1 || ! ls /usr/lib/postgresql/*/bin/initdb \
            >/dev/null 2>&1; then
        apt_install postgresql
    fi
fi
if ! "$BASE_PYTHON" -m pip --version >/dev/null 2>&1 && [ -z "${PYTHON:-}" ]; then
    apt_install python3-pip
fi

# --- SLURM: a single-node cluster on loopback, for the dabc.cluster tests ----------------------
log "starting a single-node SLURM (scripts/start-slurm.sh)"
bash scripts/start-slurm.sh >/dev/null || die "SLURM did not start: see the messages above"

# --- PostgreSQL: a running cluster, a role and a database for the tests ----------------------
pg_cluster() {  # prints "version name port status" of the first online (else first) cluster
    local all
    all=$(pg_lsclusters -h 2>/dev/null | awk '{print $1, $2, $3, $4}')
    if [ -n "${DABC_TEST_PG_CLUSTER:-}" ]; then  # e.g. 15/main
        all=$(awk -v v="${DABC_TEST_PG_CLUSTER%/*}" -v n="${DABC_TEST_PG_CLUSTER#*/}" \
            '$1 == v && $2 == n' <<<"$all")
    fi
    [ -n "$all" ] || return 0
    local online
    online=$(awk '$4 ~ /^online/ {print; exit}' <<<"$all")
    if [ -n "$online" ]; then echo "$online"; else awk 'NR == 1' <<<"$all"; fi
}

if [ -z "${DABC_TEST_POSTGRES_URL:-}" ]; then
    if [ -z "$(pg_cluster)" ] && [ -n "${DABC_TEST_PG_CLUSTER:-}" ]; then
        die "no PostgreSQL cluster $DABC_TEST_PG_CLUSTER (see pg_lsclusters)"
    elif [ -z "$(pg_cluster)" ]; then
        version=$(ls /usr/lib/postgresql | sort -V | tail -n 1)
        log "creating PostgreSQL cluster $version/main"
        "${SUDO[@]}" pg_createcluster "$version" main >/dev/null
    fi
    read -r pg_version pg_name pg_port pg_status <<<"$(pg_cluster)"
    if [[ "$pg_status" != online* ]]; then
        log "starting PostgreSQL $pg_version/$pg_name on port $pg_port"
        "${SUDO[@]}" pg_ctlcluster "$pg_version" "$pg_name" start
    fi
    for _ in $(seq 60); do
        pg_isready -q -h 127.0.0.1 -p "$pg_port" && break
        sleep 0.5
    done
    pg_isready -q -h 127.0.0.1 -p "$pg_port" \
        || die "PostgreSQL does not accept connections on 127.0.0.1:$pg_port"

    psql_admin() { as_postgres psql -X -q -v ON_ERROR_STOP=1 -p "$pg_port" -d postgres "$@"; }
    psql_admin -c "DO \$\$ BEGIN
        IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$PG_ROLE') THEN
            CREATE ROLE $PG_ROLE LOGIN CREATEDB PASSWORD '$PG_PASSWORD';
        ELSE
            ALTER ROLE $PG_ROLE LOGIN CREATEDB PASSWORD '$PG_PASSWORD';
        END IF; END \$\$;"
    if [ -z "$(psql_admin -tA -c "SELECT 1 FROM pg_database WHERE datname = '$PG_DB'")" ]; then
        psql_admin -c "CREATE DATABASE $PG_DB OWNER $PG_ROLE"
    fi
    pg_check() {
        PGPASSWORD=$PG_PASSWORD PGCONNECT_TIMEOUT=5 psql -X -q -h 127.0.0.1 -p "$pg_port" \
            -U "$PG_ROLE" -d "$PG_DB" -tA -c "SELECT 1" >/dev/null 2>&1
    }
    if ! pg_check; then  # no password login on 127.0.0.1 in pg_hba.conf: allow it for the role
        hba=$(psql_admin -tA -c "SHOW hba_file")
        log "allowing password login for $PG_ROLE on 127.0.0.1 in $hba"
        "${SUDO[@]}" sed -i "1i host all $PG_ROLE 127.0.0.1/32 scram-sha-256" "$hba"
        psql_admin -tA -c "SELECT pg_reload_conf()" >/dev/null
        pg_check || die "cannot log in to PostgreSQL as $PG_ROLE on 127.0.0.1:$pg_port"
    fi
    export DABC_TEST_POSTGRES_URL="postgresql+psycopg2://$PG_ROLE:$PG_PASSWORD@127.0.0.1:$pg_port/$PG_DB"
fi

# --- Python packages: a virtual environment of the test command's own --------------------------
# (Debian's python3 refuses pip installs outside one, PEP 668, and overriding that would write
# into the system's packages.) An active venv or an explicit PYTHON is used as it is.
if [ -z "${PYTHON:-}" ]; then
    if [ -n "${VIRTUAL_ENV:-}" ] && [ -x "$VIRTUAL_ENV/bin/python" ]; then
        PYTHON="$VIRTUAL_ENV/bin/python"
    else
        if [ ! -x "$VENV/bin/python" ]; then
            log "creating the virtual environment $VENV ($BASE_PYTHON -m venv)"
            if ! "$BASE_PYTHON" -m venv "$VENV" >/dev/null 2>&1; then
                rm -rf "$VENV"
                apt_install python3-venv
                "$BASE_PYTHON" -m venv "$VENV" || die "cannot create the virtual environment $VENV"
            fi
            "$VENV/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip \
                >/dev/null 2>&1 || true
        fi
        PYTHON="$(cd "$VENV" && pwd)/bin/python"
    fi
fi
# the tests start dabc's console scripts (dabc, redis-worker, ...) from the same environment
export PATH="$(dirname "$PYTHON"):$PATH"
pip_install() {
    PIP_ROOT_USER_ACTION=ignore "$PYTHON" -m pip install -q --disable-pip-version-check \
        -e ".[$EXTRAS]"
}
log "pip install -e .[$EXTRAS]"
if ! pip_install; then
    log "pip install failed; installing a C tool chain and retrying"
    apt_install build-essential python3-dev libpq-dev
    pip_install
fi

# --- the documentation ----------------------------------------------------------------------
# -E: a fresh environment every time, so a warning in a page that did not change since a failed
# build is reported again (an incremental build would read nothing and pass).
"$PYTHON" -c "import sphinx, numpydoc, myst_parser" 2>/dev/null \
    || die "sphinx, numpydoc or myst-parser missing: include the docs extra in DABC_TEST_EXTRAS"
log "sphinx-build -W docs -> docs/_build/html"
"$PYTHON" -m sphinx -W --keep-going -E -q -b html docs docs/_build/html \
    || die "the documentation does not build (warnings are errors): see the messages above"

# --- the tests ------------------------------------------------------------------------------
log "pytest, PostgreSQL at $(sed -E 's#//([^:@/]+):[^@/]*@#//\1:***@#' \
    <<<"$DABC_TEST_POSTGRES_URL")"
set +e
"$PYTHON" -m pytest "$@"
status=$?
exit $status
