#!/usr/bin/env bash
# A single-node Slurm cluster on this machine (localhost) from Debian's packages, for the tests that submit
# real jobs (tests/test_slurm.py) and for trying `tunebench train --slurm` by hand. Run as root; idempotent:
# installs slurm-wlm and munge when missing, writes /etc/slurm/slurm.conf once (never over a config it did not
# write), starts munged, slurmctld and slurmd when they are not running, and waits until the node takes jobs.
# Exit status 0 = the cluster answers; anything else says why on stderr (the tests then skip with that reason).
set -euo pipefail
MARK="# tunebench: single-node test cluster (written by .ci/slurm-up.sh)"
CONF=/etc/slurm/slurm.conf
die() { echo "slurm-up: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "needs root (it installs packages and starts slurmctld/slurmd as root)"

if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v munged >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq slurm-wlm munge >/dev/null || die "apt-get install slurm-wlm munge failed"
fi

host=$(hostname -s)
if [ -f "$CONF" ] && ! grep -qF "$MARK" "$CONF"; then
  die "$CONF exists and was not written by this script; not touching a real cluster's config"
fi
cpus=$(nproc)
mem=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 * 9 / 10 ))  # MiB, leaving the OS some headroom
mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm
new=$(mktemp)
cat > "$new" <<CONF
$MARK
ClusterName=tunebench
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
AuthType=auth/munge
# no cgroups: containers and CI machines rarely delegate them; processes are tracked by parent pid
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MpiDefault=none
ReturnToService=2
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
# seconds between SIGTERM and SIGKILL at a time limit or scancel: the engine saves a checkpoint in between
KillWait=30
# finished jobs stay visible to squeue/scontrol this long (no accounting database here)
MinJobAge=600
SchedulerParameters=sched_interval=2
# a requeued (preempted) job may start again after this many seconds (default 120)
AuthInfo=cred_expire=10
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF
changed=0
if ! cmp -s "$new" "$CONF"; then mv "$new" "$CONF"; chmod 644 "$CONF"; changed=1; else rm -f "$new"; fi

running() { local pid; pid=$(cat "$1" 2>/dev/null) && kill -0 "$pid" 2>/dev/null; }
mkdir -p /run/munge /var/log/munge /var/lib/munge
chown munge:munge /run/munge /var/log/munge /var/lib/munge 2>/dev/null || true
if ! running /run/munge/munged.pid; then
  [ -f /etc/munge/munge.key ] || { mungekey --create 2>/dev/null || /usr/sbin/create-munge-key -f; }
  chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
  runuser -u munge -- /usr/sbin/munged || die "munged did not start (see /var/log/munge/munged.log)"
fi
if [ "$changed" = 1 ]; then  # a config this script wrote earlier changed: restart the daemons on the new one
  for d in slurmd slurmctld; do running /run/$d.pid && kill "$(cat /run/$d.pid)" && while running /run/$d.pid; do sleep 0.2; done; done
fi
running /run/slurmctld.pid || slurmctld || die "slurmctld did not start (see /var/log/slurm/slurmctld.log)"
running /run/slurmd.pid || slurmd || die "slurmd did not start (see /var/log/slurm/slurmd.log)"

for _ in $(seq 60); do
  state=$(sinfo -h -n "$host" -o %T 2>/dev/null || true)
  case "$state" in
    idle*|mixed*|allocated*) echo "slurm-up: node $host $state"; exit 0 ;;
    down*|drain*) scontrol update nodename="$host" state=resume 2>/dev/null || true ;;
  esac
  sleep 1
done
die "node $host is not taking jobs (sinfo says '${state:-nothing}'; see /var/log/slurm/)"
