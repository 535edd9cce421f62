#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Benchmark of the network stack probe (--probes netstack: tp_btf programs
# on 13 net, skb and tcp tracepoints, run for every packet of the host). Two
# network namespaces joined by a veth pair, without and with the exporter,
# in interleaved phases:
#   1. udp: 64 B UDP datagrams, sent as fast as one sender can (sendmmsg)
#      from one namespace to a receiver in the other: datagrams/s received;
#   2. bulk: one TCP connection streaming 256 KiB writes across: MB/s;
#   3. rr: 64 B request and reply over one TCP connection: requests/s, p50;
# then the kernel's cost: BPF run statistics (--enable-bpf-stats) over one
# fixed-length run of each workload: runs and ns per program, per datagram,
# MB or request.
# Prints a results table (Markdown); raw data stays in build/bench/<time>/.
#
#   bash bench/netstack.sh [--quick] [--rounds N] [--seconds S] [--warmup S]
#                           [--workloads LIST] [--configs LIST]
#                           [--cost-seconds S] [--exporter DIR]
#   bash bench/netstack.sh --report build/bench/<time>
#
# --rounds: exporter phases of each configuration, each between two
# baseline phases (10; --quick 3); --seconds: measured seconds of each
# workload in a phase (1); --warmup: seconds each workload runs before
# measuring (0.3). --workloads: a subset of udp, bulk, rr (all by default).
# --configs: exporter (--probes netstack, every packet of the host) and
# exporter-netns (the same with --netns of the receiving namespace: the
# programs still run for every packet, and measure only that namespace's);
# both by default; and floor: an empty program on each of the probe's
# tracepoints (bench/netstack-floor.bpf.c), what a packet pays for the
# programs being there at all, the least any program on them can cost. --cost-seconds: length of each BPF statistics run (2;
# 0: none). --exporter: run the exporter of another built checkout (a clean
# clone of a commit, a worktree with a change to try) instead of this one.
# --report: re-print a run's tables from its raw data.
# Client, server, sender and receiver run on CPU 1 (with all their softirq
# work), the exporter on CPU 0 (on a machine with 2 or more CPUs).
# Needs root, clang, iproute2, taskset, curl, node and the exporter built
# (npm run build); this script builds only its C helpers. It creates two
# network namespaces, bpfnet-bench-PID-a and -b, and a veth pair between
# them; no cgroup. Everything is removed on exit, Ctrl-C or failure.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh

WORKLOADS=udp,bulk,rr
CONFIGS=exporter,exporter-netns
ROUNDS=10          # phases of each configuration, each between two baseline phases
PHASE_SECONDS=1    # measured seconds of each workload in a phase
WARMUP=0.3         # seconds each workload runs before its window
GUARD=0.5          # seconds after a switch before the first workload: the
                   # kernel's deferred work of attaching or detaching is done
COST_SECONDS=2     # length of each BPF statistics run
UDP_BYTES=64       # datagram payload
UDP_BATCH=64       # datagrams per sendmmsg and recvmmsg
RR_BYTES=64        # request and reply
WRITE_SIZE=$((256 * 1024)) # bulk: the server's write size, the client's read size
REPORT=
EXPORTER_ROOT=${EXPORTER_ROOT:-.}
ADDR_A=10.203.0.1 ADDR_B=10.203.0.2 # senders and clients in a, receiver and server in b
PORT_UDP=9000 PORT_ECHO=9001 PORT_SOURCE=9002

ARGS_GIVEN="$*"
usage() { sed -n '/^# Benchmark of the network stack probe/,/Ctrl-C or failure\.$/p' "$0" | sed 's/^# \{0,1\}//'; }
bad() { log "bench: $*; see --help"; exit 2; }
number() { [[ $2 =~ ^[0-9]+(\.[0-9]+)?$ ]] || bad "$1: a number of seconds, not '$2'"; }
while [ $# -gt 0 ]; do
  case $1 in
    --quick) ROUNDS=3 ;;
    -h|--help) usage; exit 0 ;;
    --workloads|--configs|--rounds|--seconds|--warmup|--cost-seconds|--exporter|--report)
      [ $# -ge 2 ] || bad "$1 needs a value"
      case $1 in
        --workloads) WORKLOADS=$2 ;;
        --configs) CONFIGS=$2 ;;
        --rounds) ROUNDS=$2 ;;
        --seconds) PHASE_SECONDS=$2 ;;
        --warmup) WARMUP=$2 ;;
        --cost-seconds) COST_SECONDS=$2 ;;
        --exporter) EXPORTER_ROOT=${2%/} ;;
        --report) REPORT=$2 ;;
      esac
      shift ;;
    *) bad "unknown option '$1'" ;;
  esac
  shift
done
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || bad "--rounds: a positive whole number, not '$ROUNDS'"
number --seconds "$PHASE_SECONDS"
number --warmup "$WARMUP"
number --cost-seconds "$COST_SECONDS"
awk -v s="$PHASE_SECONDS" 'BEGIN { exit !(s > 0) }' || bad "--seconds: more than 0"
IFS=, read -r -a WORKLOAD_LIST <<<"$WORKLOADS"
for w in "${WORKLOAD_LIST[@]}"; do
  case $w in udp|bulk|rr) ;; *) bad "--workloads: unknown workload '$w' (udp, bulk, rr)" ;; esac
done
IFS=, read -r -a CONFIG_LIST <<<"$CONFIGS"
for c in "${CONFIG_LIST[@]}"; do
  case $c in exporter|exporter-netns|floor) ;; *) bad "--configs: unknown configuration '$c' (exporter, exporter-netns, floor)" ;; esac
done
[ ${#WORKLOAD_LIST[@]} -gt 0 ] && [ ${#CONFIG_LIST[@]} -gt 0 ] || bad "--workloads and --configs need at least one name"

# ---- the results tables, from the raw data of a run ------------------------

# Values of one column of a TSV file with a header, on rows whose named
# columns have the given values: rows FILE COLUMN [NAME=VALUE ...]
rows() {
  local f=$1 k=$2
  shift 2
  awk -F'\t' -v k="$k" -v conds="$*" '
    NR == 1 { for (i = 1; i <= NF; i++) at[$i] = i; n = split(conds, c, " "); next }
    { for (j = 1; j <= n; j++) { split(c[j], kv, "="); if ($at[kv[1]] != kv[2]) next } print $at[k] }' "$f"
}

# Each phase of a configuration against the mean of the baseline phases
# just before and after it (seconds away, so the machine's drift cancels):
# the change in percent, one a line.
paired_changes() { # file column config workload
  awk -F'\t' -v k="$2" -v cfg="$3" -v w="$4" '
    NR == 1 { for (i = 1; i <= NF; i++) at[$i] = i; next }
    $at["workload"] == w { c[$at["phase"]] = $at["config"]; v[$at["phase"]] = $at[k] }
    END { for (p in c) if (c[p] == cfg && c[p - 1] == "baseline" && c[p + 1] == "baseline" && v[p - 1] + v[p + 1] > 0)
            print (2 * v[p] / (v[p - 1] + v[p + 1]) - 1) * 100 }' "$1"
}

# "median [low .. high]": the median of the paired changes and a 95 %
# confidence interval of their mean.
paired_line() { # file column config workload
  local vals
  vals=$(paired_changes "$@")
  [ -n "$vals" ] || { echo "-"; return; }
  awk -v m="$(median <<<"$vals")" '{ s += $1; q += $1 * $1; n++ }
    END { a = s / n; h = n > 1 ? 1.96 * sqrt((q - n * a * a) / (n - 1) / n) : 0
          printf "%+.1f %% [%+.1f .. %+.1f]", m, a - h, a + h }' <<<"$vals"
}

# A number as the report shows a measure: rates whole, latencies in us.
shown() { # value unit
  awk -v x="$1" -v u="$2" 'BEGIN { if (x == "" || x == "nan" || x == "-") print "-"; else if (u == "us") printf "%.1f us", x; else printf "%.0f", x }'
}

change() { awk -v a="$1" -v b="$2" 'BEGIN { if (a > 0 && b != "nan") printf "%+.1f %%", (b / a - 1) * 100; else print "-" }'; }

span() { sort -g | awk -v u="$1" 'NR == 1 { lo = $1 } { hi = $1 } END { if (!NR) print "-"; else if (u == "us") printf "%.1f .. %.1f", lo, hi; else printf "%.0f .. %.0f", lo, hi }'; }

# workload column unit label: the measures of the throughput table
MEASURES=(
  "udp pps - datagrams/s received"
  "bulk mbps - MB/s"
  "rr rps - requests/s"
  "rr p50_us us p50 round trip"
)

cost_tables() { # dir
  local f=$1/cost.tsv cfg w hdr sep
  [ -s "$f" ] || return 0
  echo "### Kernel cost: BPF run statistics (--enable-bpf-stats), one run of each workload"
  echo
  echo "Runs and run time of each program over the whole run (scraped before and after), per unit of work the workload counted: a datagram received, a MB (10^6 bytes) received, a request answered. ns/run is the kernel's average (-: fewer than 100 runs). BPF share: the programs' run time over the run's length, as a share of one CPU (CPU 1 does all the packet work). Time per unit: one over the median rate of the baseline phases (all of CPU 1 goes to the workload); the BPF time added to it is what the programs alone would cost a CPU-bound workload: +X % time, a 1 - 1/(1 + X) loss of rate."
  echo
  for cfg in $(awk -F'\t' 'NR > 1 && !seen[$1]++ { print $1 }' "$f"); do
    echo "#### $cfg"
    echo
    hdr="| program" sep="|---"
    for w in $(awk -F'\t' -v c="$cfg" 'NR > 1 && $1 == c && !seen[$2]++ { print $2 }' "$f"); do
      hdr+=" | $w runs/$(unit_of "$w") | $w ns/run | $w ns/$(unit_of "$w")" sep+="|---:|---:|---:"
    done
    echo "$hdr |"
    echo "$sep|"
    awk -F'\t' -v c="$cfg" '
      NR == 1 || $1 != c { next }
      !($2 in wseen) { wseen[$2] = 1; ws[++nw] = $2 }
      !($3 in pseen) { pseen[$3] = 1; ps[++np] = $3 }
      { runs[$2, $3] = $4; ns[$2, $3] = $5; units[$2] = $6; secs[$2] = $7; truns[$2] += $4; tns[$2] += $5; any[$3] += $4 }
      function row(name, r, t, w) { return sprintf(" | %.2f | %s | %.0f", r / units[w], r >= 100 ? sprintf("%.0f", t / r) : "-", t / units[w]) }
      END {
        for (i = 1; i <= np; i++) {
          if (any[ps[i]] < 100) { idle = idle (idle ? ", " : "") ps[i]; continue }
          line = "| " ps[i]
          for (j = 1; j <= nw; j++) line = line row(ps[i], runs[ws[j], ps[i]], ns[ws[j], ps[i]], ws[j])
          print line " |"
        }
        line = "| **all**"
        for (j = 1; j <= nw; j++) line = line row("all", truns[ws[j]], tns[ws[j]], ws[j])
        print line " |"
        if (idle) printf "\nFewer than 100 runs in every workload: %s.\n", idle
      }' "$f"
    echo
    echo "| workload | units counted | in | BPF per unit | BPF share of a CPU | baseline phases: time per unit | BPF time added to it |"
    echo "|---|---:|---:|---:|---:|---:|---:|"
    for w in $(awk -F'\t' -v c="$cfg" 'NR > 1 && $1 == c && !seen[$2]++ { print $2 }' "$f"); do
      awk -F'\t' -v c="$cfg" -v w="$w" -v u="$(unit_of "$w")" -v rate="$(rows "$1/phases.tsv" "$(rate_of "$w")" workload="$w" config=baseline | median)" '
        NR > 1 && $1 == c && $2 == w { ns += $5; units = $6; secs = $7 }
        END { per = ns / units; base = rate > 0 ? 1e9 / rate : 0
              printf "| %s | %.0f %s%s | %.2f s | %.0f ns | %.1f %% | %s | %s |\n", w, units, u, units == 1 || u == "MB" ? "" : "s", secs, per, ns / secs / 1e7,
                base ? sprintf("%.0f ns", base) : "-", base ? sprintf("+%.0f %%", per / base * 100) : "-" }' "$f"
    done
    echo
  done
}

# The column of phases.tsv that rates a workload.
rate_of() { case $1 in udp) echo pps ;; bulk) echo mbps ;; rr) echo rps ;; esac; }

unit_of() { case $1 in udp) echo datagram ;; bulk) echo MB ;; rr) echo request ;; esac; }

report() { # dir
  local dir=$1 f=$1/phases.tsv m w k u label cfg b r rounds
  [ -s "$f" ] || die "no phases.tsv in $dir"
  rounds=$(awk -F'\t' 'NR > 1 && $2 > r { r = $2 } END { print r + 0 }' "$f")
  echo "## Results"
  echo
  sed 's/^/    /' "$dir/machine.txt"
  echo
  echo "### Throughput over the veth pair: $rounds rounds, each exporter phase between two baseline phases"
  echo
  echo "Medians over the phases of each configuration; change = with the probe / baseline - 1; paired: each phase with the probe against the mean of the two baseline phases beside it, median [95 % CI of the mean]."
  echo
  echo "| workload | measure | configuration | baseline | with the probe | change | change, paired | baseline min .. max | with the probe min .. max |"
  echo "|---|---|---|---:|---:|---:|---:|---:|---:|"
  for m in "${MEASURES[@]}"; do
    read -r w k u label <<<"$m"
    [ -n "$(rows "$f" "$k" workload="$w")" ] || continue
    b=$(rows "$f" "$k" workload="$w" config=baseline | median)
    for cfg in $(awk -F'\t' 'NR > 1 && $3 != "baseline" && !seen[$3]++ { print $3 }' "$f"); do
      r=$(rows "$f" "$k" workload="$w" config="$cfg" | median)
      printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$w" "$label" "$cfg" "$(shown "$b" "$u")" "$(shown "$r" "$u")" \
        "$(change "$b" "$r")" "$(paired_line "$f" "$k" "$cfg" "$w")" \
        "$(rows "$f" "$k" workload="$w" config=baseline | span "$u")" "$(rows "$f" "$k" workload="$w" config="$cfg" | span "$u")"
    done
  done
  echo
  if [ -n "$(rows "$f" pps workload=udp)" ]; then
    echo "UDP, medians over the phases: what the sender sent (over its whole run), what the receiver read and what its socket dropped (receive buffer full) in the window."
    echo
    echo "| configuration | sent/s | received/s | dropped/s |"
    echo "|---|---:|---:|---:|"
    for cfg in $(awk -F'\t' 'NR > 1 && !seen[$3]++ { print $3 }' "$f"); do
      printf '| %s | %.0f | %.0f | %.0f |\n' "$cfg" "$(rows "$f" sent_pps workload=udp config="$cfg" | median)" \
        "$(rows "$f" pps workload=udp config="$cfg" | median)" "$(rows "$f" drops_per_s workload=udp config="$cfg" | median)"
    done
    echo
  fi
  cost_tables "$dir"
  if [ -s "$dir/exporter.tsv" ]; then
    echo "### What the exporter saw: one scrape at the end of each phase with the probe"
    echo
    echo "Stage samples: the sum of every bpfnet_netstack_latency_seconds_count series (the exporter starts afresh each phase); map full: bpfnet_netstack_map_full_total (0 if no sample was lost); recursion misses: bpfnet_bpf_program_recursion_misses_total; drops: bpfnet_skb_drops_total. Medians over the phases, and the largest map-full and recursion-miss counts."
    echo
    echo "| configuration | phases | stage samples | drops counted | map full (max) | recursion misses (max) |"
    echo "|---|---:|---:|---:|---:|---:|"
    for cfg in $(awk -F'\t' 'NR > 1 && !seen[$3]++ { print $3 }' "$dir/exporter.tsv"); do
      printf '| %s | %s | %.0f | %.0f | %.0f | %.0f |\n' "$cfg" "$(rows "$dir/exporter.tsv" samples config="$cfg" | wc -l)" \
        "$(rows "$dir/exporter.tsv" samples config="$cfg" | median)" "$(rows "$dir/exporter.tsv" drops config="$cfg" | median)" \
        "$(rows "$dir/exporter.tsv" map_full config="$cfg" | sort -g | tail -1)" "$(rows "$dir/exporter.tsv" recursion_misses config="$cfg" | sort -g | tail -1)"
    done
    echo
    awk -F'\t' 'NR > 1 && $4 + 0 == 0 { n++ } END { if (n) printf "WARNING: %d phases with the probe counted no stage sample.\n\n", n }' "$dir/exporter.tsv"
  fi
  # slow exporter stops (bench/lib.sh)
  [ ! -s "$dir/warnings.txt" ] || printf 'Warnings:\n\n%s\n\n' "$(sed 's/^/- /' "$dir/warnings.txt")"
  echo "Raw data: $dir/"
}

[ -z "$REPORT" ] || { report "${REPORT%/}"; exit 0; }

# ---- the run ---------------------------------------------------------------

[ "$(id -u)" = 0 ] || die "run as root: it creates network namespaces and loads BPF programs"
for tool in clang ip taskset curl node; do
  command -v "$tool" >/dev/null || die "$tool is missing"
done
[ -s "$EXPORTER_ROOT/build/js/src/cli.js" ] || die "the exporter is not built in $EXPORTER_ROOT: npm run build"
node "$EXPORTER_ROOT/build/js/src/cli.js" run --help 2>&1 | grep -q 'netstack' ||
  die "this build of the exporter has no netstack probe (node $EXPORTER_ROOT/build/js/src/cli.js run --help)"

# Pinning on a 2-core machine: every workload process on WORKLOAD_CPU. A veth
# hands each packet to its peer's backlog on the sending CPU, and the
# softirq that takes it up the peer's stack runs there too, so all the
# packet work, and every run of the probe's programs, is on that CPU: what
# the probe adds shows as lost throughput. The exporter's user space (idle
# but for its start and the scrapes between workloads) has TRACER_CPU.
NCPU=$(nproc)
WORKLOAD_CPU=${BENCH_WORKLOAD_CPU:-} TRACER_CPU=${BENCH_TRACER_CPU:-}
[ "$NCPU" -lt 2 ] || WORKLOAD_CPU=${WORKLOAD_CPU:-1} TRACER_CPU=${TRACER_CPU:-0}

EXP_PID=
bench_start # bench/lib.sh: every registered process and namespace removed at exit
mkdir -p "$OUT/metrics"
clang -O2 -Wall -Wextra -o "$BIN/udp-flood" bench/udp-flood.c
clang -g -O2 -target bpf -mcpu=v3 -D__TARGET_ARCH_"$(uname -m | sed -e 's/x86_64/x86/' -e 's/aarch64/arm64/')" -Wall -Werror \
  -I "$EXPORTER_ROOT/build/bpf" -I bpf/include -c bench/netstack-floor.bpf.c -o "$BIN/netstack-floor.bpf.o"
for prog in server client; do
  clang -O2 -Wall -Wextra -pthread -o "$BIN/redirect-$prog" "bench/redirect-$prog.c"
done

# The two namespaces and the veth pair; no IPv6 (no router solicitations or
# neighbour discovery in the windows).
make_netns a
NSA=$NETNS
make_netns b
NSB=$NETNS
for ns in "$NSA" "$NSB"; do
  ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
done
ip link add veth-a netns "$NSA" type veth peer name veth-b netns "$NSB" || die "cannot create the veth pair"
ip -n "$NSA" addr add "$ADDR_A/24" dev veth-a
ip -n "$NSB" addr add "$ADDR_B/24" dev veth-b
ip -n "$NSA" link set veth-a up
ip -n "$NSB" link set veth-b up

# Sets CMD to a command in a namespace, on the workload CPU. Run as
# "${CMD[@]}" &, $! is the command itself (ip netns exec and taskset exec it).
in_ns() { # netns cmd...
  local ns=$1
  shift
  pinned "$WORKLOAD_CPU" "$@"
  CMD=(ip netns exec "$ns" "${CMD[@]}")
}

# Starts CMD in the background, its output in $BENCH_TMP/NAME.out and .err;
# BG_PID is its process.
spawn() { # name
  : >"$BENCH_TMP/$1.out" # before the child opens it: it may be read at once
  "${CMD[@]}" >"$BENCH_TMP/$1.out" 2>"$BENCH_TMP/$1.err" &
  BG_PID=$!
  track_pid "$BG_PID"
}

# Waits for a process started by spawn; a failure ends the benchmark.
reap() { # pid name what
  wait "$1" || die "$3 failed: $(tail -3 "$BENCH_TMP/$2.err") $(cat "$BENCH_TMP/$2.out")"
  untrack_pid "$1"
}

# Waits until a process started by spawn prints "ready".
await_ready() { # pid name what
  local i
  for ((i = 0; i < 100; i++)); do
    grep -qx ready "$BENCH_TMP/$2.out" && return 0
    kill -0 "$1" 2>/dev/null || die "$3 exited at start: $(tail -3 "$BENCH_TMP/$2.err")"
    sleep 0.05
  done
  die "$3 did not start in 5 s"
}

# One run of a workload: sender and clients in namespace a, receiver and
# server in b (bulk data flows from b to a); its result line in LINE.
run_workload() { # workload seconds warmup
  local rpid spid
  case $1 in
    udp)
      in_ns "$NSB" "$BIN/udp-flood" recv -a "$ADDR_B" -p "$PORT_UDP" -b "$UDP_BATCH" -t "$2" -w "$3"
      spawn udp-recv
      rpid=$BG_PID
      await_ready "$rpid" udp-recv "the UDP receiver"
      # the sender outlasts the receiver's window by 0.3 s
      in_ns "$NSA" "$BIN/udp-flood" send -a "$ADDR_B" -p "$PORT_UDP" -s "$UDP_BYTES" -b "$UDP_BATCH" \
        -t "$(awk -v s="$2" -v w="$3" 'BEGIN { print s + w + 0.3 }')"
      spawn udp-send
      spid=$BG_PID
      reap "$spid" udp-send "the UDP sender"
      reap "$rpid" udp-recv "the UDP receiver"
      LINE="$(tail -1 "$BENCH_TMP/udp-recv.out") sent_pps=$(field pps "$(cat "$BENCH_TMP/udp-send.out")") sent_seconds=$(field seconds "$(cat "$BENCH_TMP/udp-send.out")")"
      ;;
    bulk)
      in_ns "$NSA" "$BIN/redirect-client" bulk -a "$ADDR_B" -p "$PORT_SOURCE" -c 1 -r "$WRITE_SIZE" -t "$2" -w "$3"
      spawn client
      reap "$BG_PID" client "the bulk client"
      LINE=$(cat "$BENCH_TMP/client.out")
      ;;
    rr)
      in_ns "$NSA" "$BIN/redirect-client" rr -a "$ADDR_B" -p "$PORT_ECHO" -c 1 -b "$RR_BYTES" -t "$2" -w "$3"
      spawn client
      reap "$BG_PID" client "the request/response client"
      LINE=$(cat "$BENCH_TMP/client.out")
      ;;
  esac
}

start_config() { # config [exporter flags...]
  local cfg=$1
  shift
  case $cfg in
    baseline) ;;
    exporter) start_exporter "$TRACER_CPU" --probes netstack "$@" ;;
    exporter-netns) start_exporter "$TRACER_CPU" --probes netstack --netns "/run/netns/$NSB" "$@" ;;
    floor) start_floor ;;
  esac
}

stop_config() { # config
  case $1 in
    baseline) ;;
    floor) stop_pid "$FLOOR_PID" TERM ;;
    *) stop_exporter ;;
  esac
}

# The empty programs, attached by the exporter's binding; FLOOR_PID.
start_floor() {
  local i
  pinned "$TRACER_CPU" node bench/attach-all.js "$BIN/netstack-floor.bpf.o"
  "${CMD[@]}" >"$BENCH_TMP/floor.out" 2>&1 &
  FLOOR_PID=$!
  track_pid "$FLOOR_PID"
  for ((i = 0; i < 100; i++)); do
    grep -q '^attached' "$BENCH_TMP/floor.out" && return 0
    kill -0 "$FLOOR_PID" 2>/dev/null || die "the empty programs did not attach: $(tail -3 "$BENCH_TMP/floor.out")"
    sleep 0.1
  done
  die "the empty programs did not attach in 10 s"
}

# Sums of metrics over all their label sets in a scraped file, tab-separated
# in the order asked (0 for one absent).
sums() { # file metric...
  local f=$1
  shift
  awk -v names="$*" '
    BEGIN { n = split(names, m, " "); for (i = 1; i <= n; i++) want[m[i]] = i }
    /^#/ { next }
    { name = $1; sub(/\{.*/, "", name); if (name in want) s[want[name]] += $2 }
    END { for (i = 1; i <= n; i++) printf "%s%.15g", (i > 1 ? "\t" : ""), s[i] + 0; print "" }' "$f"
}

# One phase: a configuration, then each workload afresh, measured; with the
# probe, one scrape at the end.
run_phase() { # phase round config
  local w
  start_config "$3"
  sleep "$GUARD"
  for w in "${WORKLOAD_LIST[@]}"; do
    run_workload "$w" "$PHASE_SECONDS" "$WARMUP"
    echo "$1 $3 $w $LINE" >>"$OUT/clients.txt"
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$w" "$(date +%s.%N)" \
      "$(field pps "$LINE")" "$(field sent_pps "$LINE")" \
      "$([ "$w" = udp ] && awk -v d="$(field drops "$LINE")" -v s="$(field seconds "$LINE")" 'BEGIN { printf "%.1f", d / s }')" \
      "$(field mbps "$LINE")" "$(field rps "$LINE")" "$(field p50_us "$LINE")" "$(field p99_us "$LINE")" |
      sed 's/\t\t/\t-\t/g; s/\t\t/\t-\t/g; s/\t$/\t-/' >>"$OUT/phases.tsv"
  done
  if [ "$3" != baseline ] && [ "$3" != floor ]; then
    kill -0 "$EXP_PID" 2>/dev/null || die "the exporter stopped: $(tail -3 "$BENCH_TMP/exporter.log")"
    scrape "$BENCH_TMP/phase.prom"
    grep -E '^bpfnet_(netstack|skb_drops|bpf_program_recursion)' "$BENCH_TMP/phase.prom" >"$OUT/metrics/phase-$1.prom" || true
    printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$(sums "$BENCH_TMP/phase.prom" bpfnet_netstack_latency_seconds_count \
      bpfnet_skb_drops_total bpfnet_netstack_map_full_total bpfnet_bpf_program_recursion_misses_total)" >>"$OUT/exporter.tsv"
  fi
  stop_config "$3"
}

# The kernel's BPF statistics over one run of each workload, for each
# configuration: every program's runs and run time between a scrape before
# and one after, and the units of work the workload counted (over its whole
# run for udp: the receiver's total; over the window, with no warm-up, for
# the TCP workloads, whose connections open and close just outside it).
part_cost() {
  local cfg w prog units secs
  printf 'config\tworkload\tprogram\truns\trun_ns\tunits\tseconds\n' >"$OUT/cost.tsv"
  for cfg in "${CONFIG_LIST[@]}"; do
    [ "$cfg" = floor ] && continue # empty programs: nothing to attribute
    log "kernel cost: $cfg with --enable-bpf-stats, $COST_SECONDS s of each workload"
    start_config "$cfg" --enable-bpf-stats
    sleep "$GUARD"
    for w in "${WORKLOAD_LIST[@]}"; do
      scrape "$BENCH_TMP/before.prom"
      run_workload "$w" "$COST_SECONDS" 0
      scrape "$BENCH_TMP/after.prom"
      cp "$BENCH_TMP/after.prom" "$OUT/metrics/cost-$cfg-$w.prom"
      echo "cost $cfg $w $LINE" >>"$OUT/clients.txt"
      case $w in
        udp) units=$(field total "$LINE") secs=$(field sent_seconds "$LINE") ;;
        bulk) units=$(awk -v b="$(field bytes "$LINE")" 'BEGIN { print b / 1e6 }') secs=$(field seconds "$LINE") ;;
        rr) units=$(field requests "$LINE") secs=$(field seconds "$LINE") ;;
      esac
      # each program's change in runs and run time, in the order /metrics lists them
      awk -v c="$cfg" -v w="$w" -v u="$units" -v s="$secs" '
        $1 ~ /^bpfnet_bpf_program_(runs|run_seconds)_total\{program="[^"]*"\}$/ {
          split($1, q, "\""); k = $1 ~ /_runs_total/ ? "runs" : "secs"
          if (FNR == NR) { before[k, q[2]] = $2; next }
          after[k, q[2]] = $2
          if (!(q[2] in seen)) { seen[q[2]] = 1; order[++n] = q[2] }
        }
        END { for (i = 1; i <= n; i++) { p = order[i]
                printf "%s\t%s\t%s\t%d\t%.0f\t%s\t%s\n", c, w, p, after["runs", p] - before["runs", p],
                  (after["secs", p] - before["secs", p]) * 1e9, u, s } }' "$BENCH_TMP/before.prom" "$BENCH_TMP/after.prom" >>"$OUT/cost.tsv"
    done
    stop_config "$cfg"
  done
}

started=$(date +%s)
{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "machine: $NCPU CPUs ($(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)), kernel $(uname -r)"
  echo "node $(node --version)"
  echo "exporter: $([ "$EXPORTER_ROOT" = . ] || echo "$EXPORTER_ROOT, ")commit $(git -C "$EXPORTER_ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$EXPORTER_ROOT" diff --quiet HEAD -- src bpf 2>/dev/null || echo ', with uncommitted changes in src/ or bpf/')"
  echo "pinning: senders, receivers, clients and server on CPU ${WORKLOAD_CPU:-any}, the exporter on CPU ${TRACER_CPU:-any}"
  echo "phases: $ROUNDS rounds of baseline and ${CONFIGS//,/, } in turns (B E B ... E B); in each phase, after ${GUARD} s, each workload afresh: ${WARMUP} s warm-up, ${PHASE_SECONDS} s measured"
  echo "workloads: $WORKLOADS; udp $UDP_BYTES B datagrams, $UDP_BATCH per sendmmsg/recvmmsg; bulk 1 connection, $WRITE_SIZE B writes; rr 1 connection, $RR_BYTES B each way"
  echo "network: veth pair $ADDR_A (veth-a, in $NSA: senders, clients) - $ADDR_B (veth-b, in $NSB: receiver, server); exporter-netns measures $NSB"
  echo "command: bash bench/netstack.sh $ARGS_GIVEN"
} | tee "$OUT/machine.txt" >&2

in_ns "$NSB" "$BIN/redirect-server" -a "$ADDR_B" -e "$PORT_ECHO" -b "$RR_BYTES" -s "$PORT_SOURCE" -W "$WRITE_SIZE"
spawn server
await_ready "$BG_PID" server "the TCP server"
# one connection across, outside any window: the neighbours are resolved
ip netns exec "$NSA" timeout 5 bash -c "exec 3<>/dev/tcp/$ADDR_B/$PORT_ECHO" ||
  die "cannot connect from $NSA to $ADDR_B:$PORT_ECHO over the veth pair"

printf 'phase\tround\tconfig\tworkload\tend\tpps\tsent_pps\tdrops_per_s\tmbps\trps\tp50_us\tp99_us\n' >"$OUT/phases.tsv"
printf 'phase\tround\tconfig\tsamples\tdrops\tmap_full\trecursion_misses\n' >"$OUT/exporter.tsv"
# the order of the phases, "round config" each: B C1 B C2 ... in every
# round, and a last B
SCHEDULE=()
for ((r = 1; r <= ROUNDS; r++)); do
  for c in "${CONFIG_LIST[@]}"; do SCHEDULE+=("$r baseline" "$r $c"); done
done
SCHEDULE+=("$ROUNDS baseline")
for i in "${!SCHEDULE[@]}"; do
  read -r r c <<<"${SCHEDULE[i]}"
  run_phase $((i + 1)) "$r" "$c"
  [ $(((i + 1) % (2 * ${#CONFIG_LIST[@]}))) != 0 ] || log "  round $r of $ROUNDS done"
done

if awk -v s="$COST_SECONDS" 'BEGIN { exit !(s > 0) }'; then part_cost; fi
echo "seconds: $(($(date +%s) - started))" >>"$OUT/machine.txt"
log ""
report "$OUT" | tee "$OUT/results.md"
