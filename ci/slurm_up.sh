#!/usr/bin/env bash
# slurm_up.sh - install and start a single-node SLURM cluster on THIS machine
# talking over loopback only, for the SLURM tests of dask-abc (the `slurm` fixture of
# tests/conftest.py runs it as root; ci/slurm_down.sh stops what it started).
#
# Tested on Debian 12 (slurm-wlm 22.05.8, munge 0.5.15), as root, no systemd.
# Idempotent: re-running while the cluster is up only re-checks it.
# Quiet: prints one summary line on success; on failure prints the reason and
# the tail of the relevant log, and exits non-zero.
#
# Environment knobs (all optional):
#   SLURM_CI_DIR        state/log/pid directory        [/tmp/slurm-ci]
#   SLURM_CI_CPUS       CPUs advertised for the node   [nproc --all]
#                       (> real cores works: SlurmdParameters=config_overrides)
#   SLURM_CI_MEM_MB     RealMemory advertised (MB)     [90% of physical]
#   SLURM_CI_PARTITION  partition name (Default=YES)   [debug]
#   SLURM_CI_TIMEOUT    seconds to wait for node idle  [60]
# The config is written to /etc/slurm/slurm.conf (the path every slurm client,
# including the sbatch/squeue/scancel that dask-jobqueue calls, reads by default).
set -euo pipefail

DIR=${SLURM_CI_DIR:-/tmp/slurm-ci}
PART=${SLURM_CI_PARTITION:-debug}
TIMEOUT=${SLURM_CI_TIMEOUT:-60}
CONF=/etc/slurm/slurm.conf
MARKER="# managed-by: slurm_up.sh"

die() {
    echo "slurm_up.sh: ERROR: $*" >&2
    exit 1
}
show_log() { [ -f "$1" ] && { echo "--- last lines of $1:" >&2; tail -n 15 "$1" >&2; }; return 0; }
alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

[ "$(id -u)" -eq 0 ] || die "must run as root (munged/slurmd need it)"

mkdir -p "$DIR"/{state,spool,log,run}

# ---------------------------------------------------------------- 1. packages
PKGS="slurmctld slurmd slurm-client munge"
missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y -q --no-install-recommends $missing >"$DIR/log/apt.log" 2>&1; then
        apt-get update -q >>"$DIR/log/apt.log" 2>&1 || true
        apt-get install -y -q --no-install-recommends $missing >>"$DIR/log/apt.log" 2>&1 \
            || { show_log "$DIR/log/apt.log"; die "apt-get install$missing failed"; }
    fi
fi
for b in munged munge unmunge slurmctld slurmd sinfo srun sbatch scontrol; do
    command -v "$b" >/dev/null || die "binary '$b' not found after install"
done

# ---------------------------------------------------------------- 2. hostname
NODE=$(hostname -s)
[ -n "$NODE" ] || die "hostname -s is empty"
NODE_IP=$(getent ahostsv4 "$NODE" | awk 'NR==1{print $1}')
if [ -z "$NODE_IP" ]; then
    # slurmd must be able to resolve its own name; map it to loopback.
    echo "127.0.0.1 $NODE" >>/etc/hosts
    NODE_IP=127.0.0.1
fi
case "$NODE_IP" in
    127.*) COMM="CommunicationParameters=NoInAddrAny,NoCtldInAddrAny" ;;  # bind 127.0.0.1 only
    *)     COMM="# $NODE resolves to $NODE_IP, not loopback: daemons bind 0.0.0.0, clients still use 127.0.0.1" ;;
esac

# ---------------------------------------------------------------- 3. munge
if [ ! -s /etc/munge/munge.key ]; then
    mungekey --create --keyfile=/etc/munge/munge.key >/dev/null 2>&1 \
        || dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none
fi
chown munge:munge /etc/munge/munge.key && chmod 0400 /etc/munge/munge.key
install -d -o munge -g munge -m 0755 /run/munge
install -d -o munge -g munge -m 0700 /var/log/munge /var/lib/munge
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    # nobody (healthy) listens on the default socket: start our own munged
    rm -f /run/munge/munge.socket.2 /run/munge/munge.socket.2.lock
    runuser -u munge -- munged --pid-file=/run/munge/munged.pid \
        --log-file=/var/log/munge/munged.log >"$DIR/log/munged.out" 2>&1 \
        || { show_log "$DIR/log/munged.out"; show_log /var/log/munge/munged.log; die "munged failed to start"; }
    for _ in $(seq 1 50); do
        munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break
        sleep 0.1
    done
    cp /run/munge/munged.pid "$DIR/run/munged.pid"     # marks munged as ours for slurm_down.sh
fi
munge -n | unmunge >/dev/null 2>&1 || { show_log /var/log/munge/munged.log; die "munge credential round-trip failed"; }

# ---------------------------------------------------------------- 4. slurm.conf
CPUS=${SLURM_CI_CPUS:-$(nproc --all)}  # --all: not OMP_NUM_THREADS or affinity
PHYS_MB=$(slurmd -C 2>/dev/null | sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p')
[ -n "$PHYS_MB" ] || die "slurmd -C could not detect memory"
MEM=${SLURM_CI_MEM_MB:-$((PHYS_MB * 9 / 10))}
case "$CPUS" in ''|*[!0-9]*|0) die "SLURM_CI_CPUS must be a positive integer (got '$CPUS')" ;; esac
case "$MEM" in ''|*[!0-9]*|0) die "SLURM_CI_MEM_MB must be a positive integer (got '$MEM')" ;; esac
DEFMEM=$((MEM / CPUS))

NEWCONF=$(cat <<EOF
$MARKER
ClusterName=ci
SlurmctldHost=$NODE(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
$COMM
SlurmctldPort=6817
SlurmdPort=6818
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/run/slurmctld.pid
SlurmdPidFile=$DIR/run/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
# no cgroups, no accounting database
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=$DEFMEM
SlurmdParameters=config_overrides
SchedulerType=sched/backfill
MpiDefault=none
MailProg=/bin/true
ReturnToService=2
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
MinJobAge=30
KillWait=5
Waittime=0
SlurmctldDebug=info
SlurmdDebug=info
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$MEM State=UNKNOWN
PartitionName=$PART Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
)
mkdir -p /etc/slurm
if [ -f "$CONF" ] && ! grep -q "^$MARKER" "$CONF"; then
    cp "$CONF" "$CONF.orig.$(date +%s)"                # keep a foreign config
fi
CONF_CHANGED=0
if [ ! -f "$CONF" ] || [ "$(cat "$CONF")" != "$NEWCONF" ]; then
    printf '%s\n' "$NEWCONF" >"$CONF"
    CONF_CHANGED=1
fi

# ---------------------------------------------------------------- 5. daemons
if [ "$CONF_CHANGED" = 1 ]; then
    # config changed under running daemons of ours: restart them
    for d in slurmd slurmctld; do
        if alive "$DIR/run/$d.pid"; then
            kill "$(cat "$DIR/run/$d.pid")"
            for _ in $(seq 1 50); do alive "$DIR/run/$d.pid" || break; sleep 0.2; done
        fi
    done
fi
if ! alive "$DIR/run/slurmctld.pid"; then
    # -c: start with a clean state (no jobs/nodes from earlier runs); daemonizes
    slurmctld -c >"$DIR/log/slurmctld.out" 2>&1 \
        || { show_log "$DIR/log/slurmctld.out"; show_log "$DIR/log/slurmctld.log"; die "slurmctld failed to start"; }
fi
for _ in $(seq 1 50); do scontrol ping 2>/dev/null | grep -q "is UP" && break; sleep 0.2; done
scontrol ping 2>/dev/null | grep -q "is UP" \
    || { show_log "$DIR/log/slurmctld.log"; die "slurmctld does not answer on 127.0.0.1:6817"; }
if ! alive "$DIR/run/slurmd.pid"; then
    slurmd >"$DIR/log/slurmd.out" 2>&1 \
        || { show_log "$DIR/log/slurmd.out"; show_log "$DIR/log/slurmd.log"; die "slurmd failed to start"; }
fi

# ---------------------------------------------------------------- 6. wait + smoke test
state=""
for _ in $(seq 1 $((TIMEOUT * 5))); do
    state=$(sinfo -h -n "$NODE" -o %t 2>/dev/null | head -n1)
    case "$state" in idle|mix|alloc) break ;; esac
    sleep 0.2
done
case "$state" in
    idle|mix|alloc) ;;
    *) sinfo -R >&2 || true; show_log "$DIR/log/slurmd.log"; show_log "$DIR/log/slurmctld.log"
       die "node $NODE not usable after ${TIMEOUT}s (state '$state')" ;;
esac
out=$(cd "$DIR" && timeout 60 srun -N1 -n1 -t 1 --mem=100 hostname 2>&1) \
    || { echo "$out" >&2; show_log "$DIR/log/slurmd.log"; die "srun smoke test failed"; }

echo "slurm_up.sh: SLURM up: node=$NODE cpus=$CPUS mem=${MEM}MB partition=$PART (pids: slurmctld $(cat "$DIR/run/slurmctld.pid"), slurmd $(cat "$DIR/run/slurmd.pid")) logs=$DIR/log"
