# SPDX-License-Identifier: Apache-2.0
# Helpers for bench/run.sh: every process, network namespace and cgroup the
# benchmark starts is registered here and removed by cleanup(), which run.sh
# runs on exit, Ctrl-C, SIGTERM or any failing command. Sourced, not run.

# the Node.js that scripts/setup installed, if it did (.node/), as scripts/run uses
. scripts/node-env

BENCH_PIDS=()
BENCH_NETNS=()
BENCH_CGROUP= # the benchmark's cgroup v2 subtree (make_bench_cgroup)

log() { printf '%s\n' "$*" >&2; }
die() { log "bench: $*"; exit 1; }

track_pid() { BENCH_PIDS+=("$1"); }
untrack_pid() {
  local p kept=()
  for p in "${BENCH_PIDS[@]}"; do [ "$p" = "$1" ] || kept+=("$p"); done
  BENCH_PIDS=("${kept[@]}")
}

# Asks a process to stop, waits up to 30 s (or as given), then kills it;
# STOP_RC is its exit status, STOP_TENTHS how long it took. (Not for $(...):
# a subshell cannot wait for our children.)
stop_pid() { # pid [signal] [seconds]
  local pid=$1 sig=${2:-TERM} i t
  STOP_RC=0
  kill "-$sig" "$pid" 2>/dev/null || true
  for ((i = 0; i < ${3:-30} * 10; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    # slow to stop: keep where its threads wait in the kernel, for the report
    if [ "$i" = 20 ] && [ -n "${OUT:-}" ]; then
      for t in /proc/"$pid"/task/*; do
        echo "== $(cat "$t/comm" 2>/dev/null) (pid $pid, thread ${t##*/}), 2 s after SIG$sig"
        cat "$t/stack" 2>/dev/null
      done >>"$OUT/slow-stop-stacks.txt"
    fi
    sleep 0.1
  done
  STOP_TENTHS=$i
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || STOP_RC=$?
  untrack_pid "$pid"
}

cleanup() {
  local p ns
  trap - EXIT INT TERM
  for p in "${BENCH_PIDS[@]}"; do stop_pid "$p"; done
  for ns in "${BENCH_NETNS[@]}"; do
    # a namespace outlives its file while a process is inside: end those first
    for p in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$p" 2>/dev/null || true; done
    ip netns del "$ns" 2>/dev/null || true
  done
  remove_bench_cgroup
  [ -n "${BENCH_TMP:-}" ] && rm -rf "$BENCH_TMP"
  return 0
}

# The benchmark's cgroup, bpfnet-bench-PID under the cgroup2 mount, made
# once; BENCH_CGROUP is its directory. Only the benchmark's processes are
# ever moved in, so cleanup() may kill whatever is left inside.
make_bench_cgroup() {
  local mount
  [ -z "$BENCH_CGROUP" ] || return 0
  mount=$(awk '$3 == "cgroup2" { print $2; exit }' /proc/mounts)
  [ -n "$mount" ] && [ -w "$mount/cgroup.procs" ] || die "no writable cgroup v2 mount in /proc/mounts"
  BENCH_CGROUP=$mount/bpfnet-bench-$$
  mkdir "$BENCH_CGROUP" || die "cannot create the cgroup $BENCH_CGROUP"
}

remove_bench_cgroup() {
  local i
  [ -n "$BENCH_CGROUP" ] && [ -d "$BENCH_CGROUP" ] || return 0
  [ ! -e "$BENCH_CGROUP/cgroup.kill" ] || echo 1 2>/dev/null >"$BENCH_CGROUP/cgroup.kill" || true
  for ((i = 0; i < 100; i++)); do
    # deepest first; a cgroup is EBUSY until its killed processes are reaped
    find "$BENCH_CGROUP" -depth -type d -print0 2>/dev/null | xargs -0r rmdir 2>/dev/null || true
    [ -d "$BENCH_CGROUP" ] || return 0
    sleep 0.1
  done
  log "bench: could not remove the cgroup $BENCH_CGROUP: $(cat "$BENCH_CGROUP/cgroup.procs" 2>/dev/null | tr '\n' ' ')"
}

# Makes COUNT cgroups laid out as kubelet's cgroupfs driver lays out the
# containers of BestEffort pods, kubepods/besteffort/pod<uid>/<64-hex id>,
# under the benchmark's cgroup, and for each kubelet's log link in
# CONTAINERS_DIR, <pod>_<namespace>_<container>-<id>.log, naming it
# container "app" of pod PREFIX-<n> in namespace NAMESPACE: what the
# exporter's --kubelet-containers-dir reads. Appends the containers'
# directories to FILE, one a line.
make_pods() { # namespace prefix count file
  local ns=$1 prefix=$2 count=$3 file=$4 i uid ids=() dir
  make_bench_cgroup
  CONTAINERS_DIR=$BENCH_TMP/containers
  mkdir -p "$CONTAINERS_DIR"
  mapfile -t ids < <(od -An -v -tx1 -N $((32 * count)) /dev/urandom | tr -d ' \n' | fold -w 64)
  for ((i = 0; i < count; i++)); do
    read -r uid </proc/sys/kernel/random/uuid
    dir=$BENCH_CGROUP/kubepods/besteffort/pod$uid/${ids[i]}
    printf '%s\n' "$dir" >>"$file"
    printf '%s\0%s\0' "/var/log/pods/${ns}_${prefix}-${i}_${uid}/app/0.log" "$CONTAINERS_DIR/${prefix}-${i}_${ns}_app-${ids[i]}.log"
  done | xargs -0r -n 2 ln -s
  tail -n "$count" "$file" | tr '\n' '\0' | xargs -0r mkdir -p
}

# Sets CMD to a command run in a cgroup (moved there before it starts, so
# every socket it opens is that cgroup's) and a network namespace. nsenter,
# not ip netns exec, which mounts a /sys of its own without the cgroups.
# Run as "${CMD[@]}" &, $! is the command itself.
in_cgroup_netns() { # cgroup-dir netns cmd...
  local cg=$1 ns=$2
  shift 2
  CMD=(sh -c 'echo $$ >"$1/cgroup.procs" && shift && exec "$@"' sh "$cg" nsenter "--net=/run/netns/$ns" "$@")
}

# The start of a run: a scratch directory (BENCH_TMP), the traps that clean
# up on exit, Ctrl-C or failure (with the given function, cleanup by
# default), and the run's output directory OUT (created) beside BIN. The
# scratch directory is in memory where it can be: the exporter's log is
# there, and at exit koffi fsyncs stdout and stderr, which on a disk busy
# with other writes held exporters' exits for up to 15 s.
bench_start() { # [cleanup function]
  local tmp=/tmp
  [ ! -w /dev/shm ] || tmp=/dev/shm
  BENCH_TMP=$(mktemp -d "$tmp/bpfnet-bench.XXXXXX")
  trap "${1:-cleanup}" EXIT
  trap 'log "bench: interrupted"; exit 130' INT
  trap 'log "bench: terminated"; exit 143' TERM
  OUT=build/bench/$(date -u +%Y%m%dT%H%M%SZ)
  BIN=build/bench
  mkdir -p "$OUT" "$BIN"
}

# Creates a network namespace with loopback up, named in NETNS. (Not for
# $(...): the subshell would register it for cleanup, not us.)
make_netns() { # suffix
  NETNS="bpfnet-bench-$$-$1"
  ip netns add "$NETNS" || die "cannot create network namespace $NETNS"
  BENCH_NETNS+=("$NETNS")
  ip -n "$NETNS" link set lo up
}

# Sets CMD to a command pinned to a CPU list, or unpinned when the list is
# empty. Run as "${CMD[@]}" & so that $! is the process itself.
pinned() { # cpus cmd...
  local cpus=$1
  shift
  CMD=("$@")
  [ -z "$cpus" ] || CMD=(taskset -c "$cpus" "$@")
}

# Starts the exporter with the given flags; sets EXP_PID and EXP_ADDR and
# returns once /readyz answers 200. EXPORTER_ROOT may name another built
# checkout to run instead of this one; EXPORTER_COMMAND another of its
# commands than run (redirect).
start_exporter() { # cpus flags...
  local cpus=$1 logf="$BENCH_TMP/exporter.log" i
  shift
  pinned "$cpus" node "${EXPORTER_ROOT:-.}/build/js/src/cli.js" "${EXPORTER_COMMAND:-run}" --listen 127.0.0.1:0 "$@"
  : >"$logf" # before the child opens it: it is read below at once
  "${CMD[@]}" >/dev/null 2>"$logf" &
  EXP_PID=$!
  track_pid "$EXP_PID"
  EXP_ADDR=
  for ((i = 0; i < 300; i++)); do
    kill -0 "$EXP_PID" 2>/dev/null || die "the exporter exited at start: $(tail -3 "$logf")"
    EXP_ADDR=$(sed -n 's/.*msg=listening address=\([^ ]*\).*/\1/p' "$logf" | head -1)
    if [ -n "$EXP_ADDR" ] && curl -sf -o /dev/null "http://$EXP_ADDR/readyz"; then return 0; fi
    sleep 0.1
  done
  die "the exporter did not become ready in 30 s: $(tail -3 "$logf")"
}

# Stops the exporter; it must exit 0 on SIGTERM, and soon: a slow stop is
# noted in $OUT/warnings.txt for the report. It may take minutes: closing
# the link of a syscall tracepoint's program waits for an RCU tasks trace
# grace period (synchronize_rcu_tasks_trace), which took 26 s and more
# while other tenants loaded the host; tcplife's exits waited there too.
stop_exporter() {
  stop_pid "$EXP_PID" TERM 180
  [ "$STOP_RC" = 0 ] || die "the exporter exited with status $STOP_RC on SIGTERM (after $((STOP_TENTHS / 10)) s): $(tail -3 "$BENCH_TMP/exporter.log")"
  if [ "$STOP_TENTHS" -ge 20 ] && [ -n "${OUT:-}" ]; then
    echo "the exporter took $((STOP_TENTHS / 10)).$((STOP_TENTHS % 10)) s to exit on SIGTERM at $(date -u +%H:%M:%S) (kernel stacks in slow-stop-stacks.txt)" >>"$OUT/warnings.txt"
  fi
  EXP_PID=
}

scrape() { # file
  curl -sf -o "$1" "http://$EXP_ADDR/metrics" || die "cannot scrape http://$EXP_ADDR/metrics"
}

# The value of one sample in a scraped file, 0 if absent.
sample() { # file 'name{labels}'
  awk -v s="$2" '$1 == s { v = $2 } END { printf "%.15g\n", v + 0 }' "$1"
}

# The sum of the samples of a metric whose labels include the given ones
# (label values here hold no spaces).
sum_samples() { # file name 'label="value",...'
  awk -v n="$2" -v want="$3" 'BEGIN { k = split(want, w, ",") }
    index($1, n "{") == 1 || $1 == n { for (i = 1; i <= k; i++) if (!index($1, w[i])) next; s += $2 }
    END { printf "%.15g\n", s + 0 }' "$1"
}

# Starts tcplife writing to /dev/null; sets TCPLIFE_PID and returns once its
# program is attached (it holds a BPF link).
start_tcplife() { # cpus
  local i f
  pinned "$1" tcplife
  : >"$BENCH_TMP/tcplife.log"
  "${CMD[@]}" >/dev/null 2>"$BENCH_TMP/tcplife.log" &
  TCPLIFE_PID=$!
  track_pid "$TCPLIFE_PID"
  for ((i = 0; i < 300; i++)); do
    kill -0 "$TCPLIFE_PID" 2>/dev/null || die "tcplife exited at start: $(tail -3 "$BENCH_TMP/tcplife.log")"
    for f in /proc/"$TCPLIFE_PID"/fd/*; do
      [ "$(readlink "$f" 2>/dev/null)" = "anon_inode:bpf_link" ] && return 0
    done
    sleep 0.1
  done
  die "tcplife did not attach in 30 s"
}

stop_tcplife() {
  stop_pid "$TCPLIFE_PID" INT
  TCPLIFE_PID=
}

# "prog_id run_cnt run_time_ns" for each BPF program a process holds, from
# /proc fdinfo, which needs no bpftool.
prog_stats() { # pid
  local f
  for f in /proc/"$1"/fd/*; do
    [ "$(readlink "$f" 2>/dev/null)" = "anon_inode:bpf-prog" ] || continue
    awk '/^prog_id:/ { id = $2 } /^run_cnt:/ { n = $2 } /^run_time_ns:/ { t = $2 }
         END { print id, n, t }' /proc/"$1"/fdinfo/"${f##*/}"
  done
}

# User + system CPU time of a process so far, in clock ticks.
cpu_ticks() { # pid
  # fields after the parenthesised command name, which may hold spaces
  sed 's/^.*) //' /proc/"$1"/stat | awk '{ print $12 + $13 }'
}

# "USER SYSTEM": a process's CPU time so far in each, in clock ticks.
cpu_user_system() { # pid
  sed 's/^.*) //' /proc/"$1"/stat | awk '{ print $12, $13 }'
}

# Resident memory of a process now, and at its peak, in KiB: "RSS HWM".
memory_kib() { # pid
  awk '/^VmRSS:/ { r = $2 } /^VmHWM:/ { h = $2 } END { print r, h }' /proc/"$1"/status
}

# Median of numbers on stdin.
median() {
  sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print "nan"; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# Nearest-rank percentile of numbers on stdin.
percentile() { # p (0-100)
  sort -g | awk -v p="$1" '{ v[NR] = $1 } END { r = int(p / 100 * NR); if (r < p / 100 * NR) r++; if (r < 1) r = 1; print v[r] }'
}

# A key=value field of a line.
field() { # key line
  sed -n "s/.*\\b$1=\\([^ ]*\\).*/\\1/p" <<<"$2"
}
