#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Benchmark of the TCP lifecycle probes (connect, accept, close), in five parts:
#   1. churn: loopback connect/send/receive/close throughput with no tracing,
#      with bpfnet-exporter (workload attribution on, and off) and with
#      tcplife, in interleaved rounds; the churn runs in 4 pods' cgroups;
#   2. kernel cost: ns per BPF program run and runs per connection
#      (--enable-bpf-stats), attribution on and off, alone and both attached
#      at once, next to tcplife's program; and what the exporter's syscall
#      tracepoints add to every system call;
#   3. scrape: /metrics duration with 5,000 accept label sets;
#   4. the exporter's own CPU under churn at several rates, scraped every
#      second, attribution on and off (not run by default);
#   5. scrape: /metrics duration with the series of hundreds of pods,
#      attribution on and off, and the exporter's memory (not run by default).
# Prints a results table (Markdown); raw data stays in build/bench/<time>/.
#
#   bash bench/run.sh [--quick] [--rounds N] [--seconds S] [--configs LIST]
#                     [--scrapes N] [--parts 1,2,3,4,5] [--pods LIST] [--no-build]
#
# --rounds: tracer phases of each configuration (40; --quick 6); --seconds:
# measured seconds per phase (1). --configs takes baseline (always run
# between the others), exporter (default flags: workload attribution on),
# exporter-noattr (--labels leaving out every workload label: attribution
# off), exporter-connect (connect probe only: no accept tracepoints),
# exporter-netns (filtered to the churn namespace), exporter-sidecar
# (timing a sidecar, --sidecar-comm, that the churn does not run: what the
# sidecar programs cost every other connection), tcplife, and
# exporter=DIR: the exporter of another built checkout (a git worktree with
# a change to try), with the default probes; exporter-sidecar=DIR: the same
# timing a sidecar, as exporter-sidecar. Part 2 times the exporter
# configurations listed (exporter if none; the first two also side by
# side), and tcplife when listed; part 4 runs an exporter=DIR beside its
# own two. --pods: the pod counts of part 5
# (64,625). --scrapes: timed scrapes of part 3 (100) and of each exporter
# and pod count in part 5 (50).
# Needs root, clang, iproute2, nsenter, taskset, curl, node, cgroup v2 and,
# for the tcplife configuration, tcplife (Debian: apt-get install
# libbpf-tools). What it starts runs in network namespaces and cgroups of its
# own and is removed on exit, Ctrl-C or failure.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
. bench/parts.sh
. bench/parts-workload.sh

ROUNDS=40          # part 1: phases of each tracer, each between two baseline phases
PHASE_SECONDS=1    # part 1: measured seconds per phase
GUARD=0.5          # part 1: seconds after a switch before measuring: the kernel's deferred
                   # work of attaching, and of the last phase's detaching, is done by then
BPF_ROUNDS=6       # part 2: program statistics rounds of each exporter configuration, alone and side by side
BPF_ROUND_SECONDS=2 # part 2: measured seconds of churn per round
WARMUP=1           # churn seconds before measuring: threads running, TIME_WAIT at its cap
CLIENTS=4          # client threads (and as many server threads)
SERVER_PORTS=4     # server ports, to multiply the 4-tuples past TIME_WAIT
CHURN_PODS=4       # pods (cgroups) the churn runs in, a process each; divides the two above
SYSCALL_REPS=8     # part 2: turns of the system call timing
SCRAPES=100        # timed scrapes in part 3
ACCEPT_PORTS=5000  # distinct listening ports in part 3
CPU_RATES=0,2000,max # part 4: churn rates, connections a second (max: flat out)
CPU_SECONDS=10     # part 4: seconds of churn at each rate
CPU_REPS=2         # part 4: turns of both configurations
SCRAPE_INTERVAL=1  # part 4: seconds between scrapes
PODS_LIST=64,625   # part 5: pod counts
POD_PORTS=4        # part 5: ports each pod connects to (connect label sets per pod)
POD_SCRAPES=50     # part 5: timed scrapes of each exporter at each pod count
CONFIGS=baseline,exporter,exporter-noattr,tcplife
PARTS=1,2,3
BUILD=1

ARGS_GIVEN="$*"
usage() { sed -n '/^#   bash bench/,/^#  *\[--scrapes/p' "$0" | sed 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
  case $1 in
    --quick) ROUNDS=6 BPF_ROUNDS=2 BPF_ROUND_SECONDS=2 SYSCALL_REPS=4 SCRAPES=50 CPU_SECONDS=5 CPU_REPS=1 POD_SCRAPES=20 ;;
    --rounds) ROUNDS=$2; shift ;;
    --seconds) PHASE_SECONDS=$2; shift ;;
    --configs) CONFIGS=$2; shift ;;
    --scrapes) SCRAPES=$2 POD_SCRAPES=$2; shift ;;
    --parts) PARTS=$2; shift ;;
    --pods) PODS_LIST=$2; shift ;;
    --no-build) BUILD=0 ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; exit 2 ;;
  esac
  shift
done
IFS=, read -r -a CONFIG_LIST <<<"$CONFIGS"
for c in "${CONFIG_LIST[@]}"; do
  case $c in
    baseline|exporter|exporter-noattr|exporter-connect|exporter-netns|exporter-sidecar|tcplife) ;;
    exporter=*|exporter-sidecar=*) [ -s "${c#*=}/build/js/src/cli.js" ] || die "--configs $c: no built exporter there (build/js/src/cli.js)" ;;
    *) die "--configs: unknown configuration $c; see --help" ;;
  esac
done
# baseline runs between all the others: losses are relative to it
TRACERS=()
for c in "${CONFIG_LIST[@]}"; do [ "$c" = baseline ] || TRACERS+=("$c"); done
[ ${#TRACERS[@]} -gt 0 ] || die "--configs: name at least one tracer to compare with baseline"

[ "$(id -u)" = 0 ] || die "run as root: it loads BPF programs and creates network namespaces and cgroups"
for tool in clang ip nsenter taskset curl node $([[ ,$CONFIGS, != *,tcplife,* ]] || echo tcplife); do
  command -v "$tool" >/dev/null || die "$tool is missing$([ $tool = tcplife ] && echo '; install it: apt-get install libbpf-tools')"
done
[ $((CLIENTS % CHURN_PODS)) = 0 ] && [ $((SERVER_PORTS % CHURN_PODS)) = 0 ] || die "CHURN_PODS ($CHURN_PODS) must divide CLIENTS and SERVER_PORTS"

# Pinning on a 2-core machine: the whole workload (client and server
# threads, and with them the loopback softirq work and every BPF program
# run) on WORKLOAD_CPU; the tracers' user space (node; tcplife reading its
# perf buffer) on TRACER_CPU. The workload is then CPU-bound on one core, so
# each nanosecond the probes add to the TCP path shows as lost throughput,
# and a tracer's own processing cannot steal that core: it is reported apart.
NCPU=$(nproc)
if [ "$NCPU" -ge 2 ]; then
  WORKLOAD_CPU=${BENCH_WORKLOAD_CPU:-1} TRACER_CPU=${BENCH_TRACER_CPU:-0}
else
  WORKLOAD_CPU=${BENCH_WORKLOAD_CPU:-} TRACER_CPU=${BENCH_TRACER_CPU:-}
fi

bench_start
# kubelet's container links of the benchmark's pods (make_pods), for every
# configuration of this checkout's exporter
CONTAINERS_DIR=$BENCH_TMP/containers
mkdir -p "$CONTAINERS_DIR"

if [ "$BUILD" = 1 ]; then
  log "building the BPF objects and the exporter"
  bash scripts/build-bpf.sh >&2
  npx tsc -p . >&2
fi
[ -s build/bpf/tcp-lifecycle.bpf.o ] && [ -s build/js/src/cli.js ] || die "the exporter is not built: run without --no-build"
for prog in churn ports syscall hop; do
  clang -O2 -Wall -Wextra -pthread -o "$BIN/$prog" "bench/$prog.c"
done

started=$(date +%s)
{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "machine: $NCPU CPUs ($(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)), kernel $(uname -r)"
  echo "node $(node --version), tcplife $(dpkg-query -W -f '${Version}' libbpf-tools 2>/dev/null || echo '(version unknown)')"
  echo "exporter: commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD -- src bpf 2>/dev/null || echo ', with uncommitted changes in src/ or bpf/')"
  echo "pinning: workload on CPU ${WORKLOAD_CPU:-any}, tracer user space on CPU ${TRACER_CPU:-any}"
  [[ $PARTS != *1* ]] || echo "churn: $ROUNDS rounds of baseline and ${TRACERS[*]} phases, ${PHASE_SECONDS} s each; $CLIENTS clients, $SERVER_PORTS server ports, 1 KiB each way, in $CHURN_PODS pods"
  echo "command: bash bench/run.sh $ARGS_GIVEN"
} | tee "$OUT/machine.txt" >&2

if [[ $PARTS == *1* ]]; then part_churn; fi
if [[ $PARTS == *2* ]]; then part_bpf_cost; part_syscall_cost; fi
if [[ $PARTS == *3* ]]; then part_scrape; fi
if [[ $PARTS == *4* ]]; then part_user_cpu; fi
if [[ $PARTS == *5* ]]; then part_scrape_pods; fi
echo "seconds: $(($(date +%s) - started))" >>"$OUT/machine.txt"
log ""
bash bench/report.sh "$OUT" | tee "$OUT/results.md"
