#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Benchmark of the TCP lifecycle probes (connect, accept, close), in three parts:
#   1. churn: loopback connect/send/receive/close throughput with no tracing,
#      with bpfnet-exporter and with tcplife, in interleaved rounds;
#   2. kernel cost: ns per BPF program run and runs per connection
#      (--enable-bpf-stats), next to tcplife's program; and what the
#      exporter's syscall tracepoints add to every system call;
#   3. scrape: /metrics duration with 5,000 accept label sets.
# Prints a results table (Markdown); raw data stays in build/bench/<time>/.
#
#   bash bench/run.sh [--quick] [--rounds N] [--seconds S] [--configs LIST]
#                     [--scrapes N] [--parts 1,2,3] [--no-build]
#
# --rounds: tracer phases of each configuration (40; --quick 6); --seconds:
# measured seconds per phase (1). --configs takes baseline (always run
# between the others), exporter, exporter-connect (connect probe only:
# no accept tracepoints), exporter-netns (filtered to the churn namespace),
# tcplife, and exporter=DIR: the exporter of another built checkout (a git
# worktree with a change to try), with the default probes.
# Needs root, clang, iproute2, taskset, curl, node and tcplife (Debian:
# apt-get install libbpf-tools). What it starts runs in network namespaces of
# its own and is removed on exit, Ctrl-C or failure.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
. bench/parts.sh

ROUNDS=40          # part 1: phases of each tracer, each between two baseline phases
PHASE_SECONDS=1    # part 1: measured seconds per phase
GUARD=0.5          # part 1: seconds after a switch before measuring: the kernel's deferred
                   # work of attaching, and of the last phase's detaching, is done by then
ROUND_SECONDS=4    # part 2: measured seconds of churn per program statistics round
WARMUP=1           # churn seconds before measuring: threads running, TIME_WAIT at its cap
CLIENTS=4          # client threads (and as many server threads)
SERVER_PORTS=4     # server ports, to multiply the 4-tuples past TIME_WAIT
SYSCALL_REPS=8     # part 2: turns of the system call timing
SCRAPES=100        # timed scrapes in part 3
ACCEPT_PORTS=5000  # distinct listening ports in part 3
CONFIGS=baseline,exporter,tcplife
PARTS=1,2,3
BUILD=1

ARGS_GIVEN="$*"
usage() { sed -n '/^#   bash bench/,/^#  *\[--scrapes/p' "$0" | sed 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
  case $1 in
    --quick) ROUNDS=6 ROUND_SECONDS=2 SYSCALL_REPS=4 SCRAPES=50 ;;
    --rounds) ROUNDS=$2; shift ;;
    --seconds) PHASE_SECONDS=$2; shift ;;
    --configs) CONFIGS=$2; shift ;;
    --scrapes) SCRAPES=$2; shift ;;
    --parts) PARTS=$2; shift ;;
    --no-build) BUILD=0 ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; exit 2 ;;
  esac
  shift
done
IFS=, read -r -a CONFIG_LIST <<<"$CONFIGS"
for c in "${CONFIG_LIST[@]}"; do
  case $c in
    baseline|exporter|exporter-connect|exporter-netns|tcplife) ;;
    exporter=*) [ -s "${c#exporter=}/build/js/src/cli.js" ] || die "--configs $c: no built exporter there (build/js/src/cli.js)" ;;
    *) die "--configs: unknown configuration $c; see --help" ;;
  esac
done
# baseline runs between all the others: losses are relative to it
TRACERS=()
for c in "${CONFIG_LIST[@]}"; do [ "$c" = baseline ] || TRACERS+=("$c"); done
[ ${#TRACERS[@]} -gt 0 ] || die "--configs: name at least one tracer to compare with baseline"

[ "$(id -u)" = 0 ] || die "run as root: it loads BPF programs and creates network namespaces"
for tool in clang ip taskset curl node tcplife; do
  command -v "$tool" >/dev/null || die "$tool is missing$([ $tool = tcplife ] && echo '; install it: apt-get install libbpf-tools')"
done

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

if [ "$BUILD" = 1 ]; then
  log "building the BPF objects and the exporter"
  bash scripts/build-bpf.sh >&2
  npx tsc -p . >&2
fi
[ -s build/bpf/tcp-lifecycle.bpf.o ] && [ -s build/js/src/cli.js ] || die "the exporter is not built: run without --no-build"
for prog in churn ports syscall; do
  clang -O2 -Wall -Wextra -pthread -o "$BIN/$prog" "bench/$prog.c"
done

started=$(date +%s)
{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "machine: $NCPU CPUs ($(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)), kernel $(uname -r)"
  echo "node $(node --version), tcplife $(dpkg-query -W -f '${Version}' libbpf-tools 2>/dev/null || echo '(version unknown)')"
  echo "exporter: commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD -- src bpf 2>/dev/null || echo ', with uncommitted changes in src/ or bpf/')"
  echo "pinning: workload on CPU ${WORKLOAD_CPU:-any}, tracer user space on CPU ${TRACER_CPU:-any}"
  echo "churn: $ROUNDS rounds of baseline and ${TRACERS[*]} phases, ${PHASE_SECONDS} s each; $CLIENTS clients, $SERVER_PORTS server ports, 1 KiB each way"
  echo "command: bash bench/run.sh $ARGS_GIVEN"
} | tee "$OUT/machine.txt" >&2

if [[ $PARTS == *1* ]]; then part_churn; fi
if [[ $PARTS == *2* ]]; then part_bpf_cost; part_syscall_cost; fi
if [[ $PARTS == *3* ]]; then part_scrape; fi
echo "seconds: $(($(date +%s) - started))" >>"$OUT/machine.txt"
log ""
bash bench/report.sh "$OUT" | tee "$OUT/results.md"
