#!/usr/bin/env bash
# A one-node SLURM with accounting on localhost, for the tests (README "SLURM").
#
#   tests/slurm/cluster.sh start    install (Debian packages, once) and start munge, MariaDB, slurmdbd,
#                                   slurmctld, slurmd; waits until the node is idle and sacct answers
#   tests/slurm/cluster.sh stop     stop every daemon it started (nothing left running)
#   tests/slurm/cluster.sh status   what is running; exit 0 when the cluster takes jobs
#
# Root only. Idempotent: start on a running cluster checks it and returns; stop on a stopped one does nothing.
#
# The node (NodeName=localhost) has no GPU but is configured as a GPU node would be, so the diffusion
# shots' jobs (--gpus=N --cpus-per-gpu=M --mem=96000) are accepted and accounted as on a real GPU partition:
#  - gres/gpu:2 backed by two fake device files ($STATE/dev/gpu0, gpu1); accounting tracks gres/gpu, so
#    `sacct -o AllocTRES` shows gres/gpu=N for those jobs (the programs inside run on CPU);
#  - the node advertises CPUS cores and MEM_MB of memory (more than the box: SlurmdParameters=config_overrides)
#    so the profile's real requests fit; jobs run on the box's real cores;
#  - partitions: `normal` (default, what profiles/slurm uses) and `gpu`, both on that node.
# Daemons run as root, no cgroups: processes are tracked by process group (proctrack/pgid, so a job's
# processes orphaned by its batch shell are still killed by scancel), state and logs under $STATE.
set -euo pipefail

STATE=${CINECOMP_SLURM_STATE:-/var/lib/cinecomp-slurm}
CPUS=${CINECOMP_SLURM_CPUS:-8}
MEM_MB=${CINECOMP_SLURM_MEM_MB:-196608}
ETC=/etc/slurm
PKGS=(munge mariadb-server slurmctld slurmd slurmdbd slurm-client)

die() { echo "cluster.sh: $*" >&2; exit 1; }

need_root() { [ "$(id -u)" = 0 ] || die "must run as root (it installs packages and starts daemons)"; }

install() {
  local missing=()
  for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  command -v apt-get >/dev/null || die "apt-get not found: install ${missing[*]} by hand"
  echo "cluster.sh: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  # no service starts from the packages' scripts: this script starts what it needs itself
  printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d.cinecomp
  chmod +x /usr/sbin/policy-rc.d.cinecomp
  local had_policy=0
  [ -e /usr/sbin/policy-rc.d ] && had_policy=1
  [ $had_policy = 1 ] || cp /usr/sbin/policy-rc.d.cinecomp /usr/sbin/policy-rc.d
  apt-get update -q >/dev/null
  apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
  [ $had_policy = 1 ] || rm -f /usr/sbin/policy-rc.d
  rm -f /usr/sbin/policy-rc.d.cinecomp
}

write_config() {
  mkdir -p "$ETC" "$STATE"/{ctld,d,dbd,log,run,dev}
  touch "$STATE/dev/gpu0" "$STATE/dev/gpu1"
  cat >"$ETC/slurm.conf" <<EOF
# written by cinecomp tests/slurm/cluster.sh
ClusterName=cinecomp
SlurmctldHost=localhost(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/d
SlurmctldPidFile=$STATE/run/slurmctld.pid
SlurmdPidFile=$STATE/run/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
ProctrackType=proctrack/pgid
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SlurmdParameters=config_overrides
ReturnToService=2
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2,bf_interval=2
MessageTimeout=20
KillWait=5
MinJobAge=600
InactiveLimit=0
GresTypes=gpu
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=task=1
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStorageTRES=gres/gpu
AccountingStoreFlags=job_comment
JobCompType=jobcomp/none
MailProg=/bin/true
MpiDefault=none
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$MEM_MB Gres=gpu:2 State=UNKNOWN
PartitionName=normal Nodes=localhost Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
PartitionName=gpu Nodes=localhost MaxTime=INFINITE State=UP
EOF
  cat >"$ETC/gres.conf" <<EOF
NodeName=localhost Name=gpu File=$STATE/dev/gpu[0-1]
EOF
  cat >"$ETC/slurmdbd.conf" <<EOF
AuthType=auth/munge
DbdHost=localhost
DbdAddr=127.0.0.1
SlurmUser=root
LogFile=$STATE/log/slurmdbd.log
PidFile=$STATE/run/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StoragePass=cinecomp
StorageLoc=slurm_acct_db
EOF
  chmod 600 "$ETC/slurmdbd.conf"
  echo "CgroupPlugin=autodetect" >"$ETC/cgroup.conf"  # only initialised: proctrack/task use no cgroups
}

alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

wait_for() {  # seconds, description, command...
  local t=$1 what=$2; shift 2
  for _ in $(seq $((t * 4))); do "$@" >/dev/null 2>&1 && return 0; sleep 0.25; done
  die "$what did not come up in ${t}s (logs: $STATE/log/, $STATE/mysql/)"
}

start_munge() {
  mkdir -p /run/munge && chown munge:munge /run/munge
  [ -s /etc/munge/munge.key ] || { dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 2>/dev/null; \
    chown munge:munge /etc/munge/munge.key; chmod 400 /etc/munge/munge.key; }
  munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && return 0
  runuser -u munge -- /usr/sbin/munged --force
  wait_for 10 munged sh -c 'munge -n | unmunge'
}

start_mariadb() {
  mkdir -p /run/mysqld "$STATE/mysql" && chown mysql:mysql /run/mysqld "$STATE/mysql"
  if ! mariadb-admin ping >/dev/null 2>&1; then
    [ -d /var/lib/mysql/mysql ] || mariadb-install-db --user=mysql >/dev/null
    (setsid /usr/sbin/mariadbd --user=mysql --pid-file="$STATE/mysql/mariadb.pid" --bind-address=127.0.0.1 \
      --log-error="$STATE/mysql/mariadb.log" </dev/null >/dev/null 2>&1 &)
    wait_for 60 MariaDB mariadb-admin ping
  fi
  mariadb -e "CREATE DATABASE IF NOT EXISTS slurm_acct_db;
    CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'cinecomp';
    GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost'; FLUSH PRIVILEGES;"
}

start() {
  need_root
  if status >/dev/null 2>&1; then echo "cluster.sh: already running"; return 0; fi
  install
  write_config
  start_munge
  start_mariadb
  alive "$STATE/run/slurmdbd.pid" || /usr/sbin/slurmdbd
  wait_for 60 slurmdbd sacctmgr -n show cluster
  sacctmgr -i -Q add cluster cinecomp >/dev/null 2>&1 || true
  alive "$STATE/run/slurmctld.pid" || /usr/sbin/slurmctld
  wait_for 60 slurmctld scontrol ping
  alive "$STATE/run/slurmd.pid" || /usr/sbin/slurmd -N localhost
  wait_for 60 "the node" sh -c "sinfo -h -N -o %t | grep -Eq '^(idle|mix|alloc)'"
  # a node left drained/down by an earlier run takes jobs again
  scontrol update nodename=localhost state=resume >/dev/null 2>&1 || true
  wait_for 60 "accounting" sacct -n -X -S now-1minutes
  echo "cluster.sh: SLURM up: partitions normal (default) and gpu on localhost ($CPUS CPUs, gpu:2 fake devices)"
}

stop() {
  need_root
  local pid
  scancel --user=root >/dev/null 2>&1 || true
  for d in slurmd slurmctld slurmdbd; do
    if alive "$STATE/run/$d.pid"; then
      pid=$(cat "$STATE/run/$d.pid")
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 80); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
      kill -9 "$pid" 2>/dev/null || true
    fi
  done
  if alive "$STATE/mysql/mariadb.pid"; then
    pid=$(cat "$STATE/mysql/mariadb.pid")
    mariadb-admin shutdown >/dev/null 2>&1 || kill "$pid" 2>/dev/null || true
    for _ in $(seq 120); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
  fi
  if [ -f /run/munge/munged.pid ] && kill -0 "$(cat /run/munge/munged.pid)" 2>/dev/null; then
    pid=$(cat /run/munge/munged.pid)
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
  fi
  echo "cluster.sh: stopped"
}

status() {
  local ok=0
  for f in run/slurmdbd run/slurmctld run/slurmd mysql/mariadb; do
    if alive "$STATE/$f.pid"; then echo "${f#*/}: running (pid $(cat "$STATE/$f.pid"))"; else echo "${f#*/}: stopped"; ok=1; fi
  done
  if [ -f /run/munge/munged.pid ] && kill -0 "$(cat /run/munge/munged.pid)" 2>/dev/null; then echo "munged: running";
  else echo "munged: stopped"; ok=1; fi
  [ $ok = 0 ] && sinfo -N -o "%N %P %t %c %m %G" 2>/dev/null || ok=1
  return $ok
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
