#!/usr/bin/env bash
# Start a single-node SLURM cluster on this machine, for dabc's cluster tests. Idempotent:
# packages already installed, a munged or slurmctld/slurmd already running are left alone.
#
#   bash scripts/start-slurm.sh          # as root (or with sudo)
#
# Debian 12's slurmctld, slurmd, slurm-client and munge, without systemd:
# - /run/munge is created (owner munge, mode 0755): there is no systemd to make it;
# - the node's hardware line is copied from `slurmd -C`, with 512 MB kept for the system; the
#   node offers at least DABC_SLURM_CPUS (default 8) CPUs (SlurmdParameters=config_overrides):
#   a test runs a scheduler job beside several worker jobs, which a 2-core machine could not
#   hold at one CPU each (their simulations sleep or are short, so oversubscribing is harmless);
# - DefMemPerCPU is set, or a job without --mem takes the whole node and jobs run one at a time;
# - proctrack/linuxproc and task/none: no cgroups (none are delegated in a container);
# - SlurmctldHost and NodeAddr are 127.0.0.1, so all SLURM traffic stays on loopback;
# - one partition "debug" (default), MaxTime 1 hour; a job's time limit is enforced by
#   slurmctld about every 30 s.
# Prints the partition's state when the node is idle; exits non-zero if it never gets there.
set -euo pipefail

log() { printf '[start-slurm] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

if [ "$(id -u)" -eq 0 ]; then SUDO=(); else SUDO=(sudo); fi

missing=()
for p in slurmctld slurmd slurm-client munge; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" \
        || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    log "apt-get install ${missing[*]}"
    "${SUDO[@]}" apt-get update -qq >/dev/null
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        --no-install-recommends "${missing[@]}" >/dev/null
fi

# --- munge ----------------------------------------------------------------------------------
"${SUDO[@]}" install -d -o munge -g munge -m 0755 /run/munge
"${SUDO[@]}" install -d -o munge -g munge -m 0700 /var/log/munge /var/lib/munge
if [ ! -s /etc/munge/munge.key ]; then
    log "creating /etc/munge/munge.key"
    "${SUDO[@]}" mungekey --create --force
    "${SUDO[@]}" chown munge:munge /etc/munge/munge.key
    "${SUDO[@]}" chmod 0400 /etc/munge/munge.key
fi
if ! munge -n </dev/null >/dev/null 2>&1; then
    log "starting munged"
    "${SUDO[@]}" runuser -u munge -- /usr/sbin/munged
    for _ in $(seq 50); do munge -n </dev/null >/dev/null 2>&1 && break; sleep 0.1; done
    munge -n </dev/null >/dev/null 2>&1 || die "munged does not answer"
fi

# --- slurm.conf -----------------------------------------------------------------------------
conf=/etc/slurm/slurm.conf
if [ ! -s "$conf" ] || ! grep -q "written by dabc scripts/start-slurm.sh" "$conf"; then
    node=$(slurmd -C | head -n 1)
    name=$(sed -E 's/.*NodeName=([^ ]+).*/\1/' <<<"$node")
    cpus=$(sed -E 's/.*CPUs=([0-9]+).*/\1/' <<<"$node")
    mem=$(sed -E 's/.*RealMemory=([0-9]+).*/\1/' <<<"$node")
    mem=$((mem > 1024 ? mem - 512 : mem))
    hw=$(sed -E -e 's/^NodeName=[^ ]+ //' -e 's/RealMemory=[0-9]+//' <<<"$node")
    want=${DABC_SLURM_CPUS:-8}
    if [ "$cpus" -lt "$want" ]; then
        cpus=$want
        hw="CPUs=$cpus Boards=1 SocketsPerBoard=1 CoresPerSocket=$cpus ThreadsPerCore=1"
    fi
    log "writing $conf for node $name ($cpus CPUs, $mem MB)"
    "${SUDO[@]}" install -d -m 0755 /etc/slurm /var/spool/slurmctld /var/spool/slurmd \
        /var/log/slurm
    "${SUDO[@]}" chown slurm:slurm /var/spool/slurmctld /var/log/slurm
    "${SUDO[@]}" tee "$conf" >/dev/null <<EOF
# written by dabc scripts/start-slurm.sh: a single-node cluster on loopback
ClusterName=dabc
SlurmctldHost=$name(127.0.0.1)
SlurmUser=slurm
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
ReturnToService=2
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1024
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
SlurmctldTimeout=30
SlurmdTimeout=30
SlurmdParameters=config_overrides
InactiveLimit=0
KillWait=5
MinJobAge=30
OverTimeLimit=0
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
NodeName=$name NodeAddr=127.0.0.1 $hw RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=$name Default=YES MaxTime=01:00:00 State=UP
EOF
    # a running daemon keeps the old configuration: restart both
    for pidfile in /run/slurmctld.pid /run/slurmd.pid; do
        if [ -s "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
            "${SUDO[@]}" kill "$(cat "$pidfile")"
            sleep 1
        fi
    done
fi

running() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }
if ! running /run/slurmctld.pid; then
    log "starting slurmctld"
    "${SUDO[@]}" /usr/sbin/slurmctld
fi
if ! running /run/slurmd.pid; then
    log "starting slurmd"
    "${SUDO[@]}" /usr/sbin/slurmd
fi

for _ in $(seq 60); do
    state=$(sinfo -h -o '%T' 2>/dev/null | head -n 1 || true)
    case "$state" in
        idle*|mixed*|alloc*) sinfo; exit 0 ;;
        down*|drain*) "${SUDO[@]}" scontrol update nodename="$(sinfo -h -o %N)" state=resume \
            2>/dev/null || true ;;
    esac
    sleep 0.5
done
sinfo || true
die "the SLURM node did not become idle in 30 s (see /var/log/slurm/*.log)"
