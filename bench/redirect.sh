#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Benchmark of the socket redirect (bpfnet-exporter redirect: sockops and
# sk_msg programs on a cgroup, which pass TCP payload between two sockets of
# the host straight into the peer's receive queue). Loopback TCP with and
# without it, in interleaved phases:
#   1. request/response: 1 KiB each way over 1, 8 and 64 persistent
#      connections: requests/s, p50 and p99 round-trip latency;
#   2. the same through a proxy chain, client -> proxy -> server, the proxy
#      an epoll forwarder with one upstream connection per downstream one,
#      as a sidecar (proxy), or a thread-per-connection one with blocking
#      reads and writes, two threads a connection (threads);
#   3. bulk: 256 KiB writes streamed over 1 and 4 connections, direct and
#      through the proxies: MB/s;
#   4. slow readers (stall): writers flat out against 1 or 64 readers that
#      read nothing, until the writers block: how far ahead they got and the
#      TCP memory of the host that took; then the readers read it all and
#      both ends' SHA-256 must agree.
# Prints a results table (Markdown); raw data stays in build/bench/<time>/.
#
#   bash bench/redirect.sh [--quick] [--rounds N] [--seconds S] [--warmup S]
#                          [--workloads LIST] [--request-bytes B] [--write-size B]
#                          [--mem-guard KIB] [--cpus LIST] [--no-exporter]
#   bash bench/redirect.sh --report build/bench/<time>
#
# --rounds: redirect phases of each workload, each between two baseline
# phases (10; --quick 3); --seconds: measured seconds per phase (1);
# --warmup: seconds each phase runs on its fresh connections before measuring
# (0.3). --workloads: a subset of rr-direct-1, rr-direct-8, rr-direct-64,
# rr-proxy-1, rr-proxy-8, rr-proxy-64, rr-threads-1, rr-threads-8,
# rr-threads-64, bulk-direct-1, bulk-direct-4, bulk-proxy-1, bulk-proxy-4,
# bulk-threads-1, stall-direct-1, stall-direct-64 (KIND-PATH-CONNECTIONS, all
# by default).
# --request-bytes: request and reply size (1024); --write-size: the bulk
# server's write size, also the client's read size and the proxy's buffer
# per direction (262144). --mem-guard: a phase's window ends early once all
# TCP sockets of the host hold more than KIB (/proc/net/sockstat; default
# the lowest net.ipv4.tcp_mem threshold; 0: never): what redirect queues for
# a slower reader is not bounded by its receive buffer, and past tcp_mem the
# host's TCP would come under memory pressure, then fail.
# --cpus: the CPUs of the client, proxy and server (1 on a machine with 2 or
# more, else any); the exporter runs on CPU 0. --no-exporter: never start the
# exporter, so both sides run without redirect: what noise alone makes of the
# comparison (an A/A test). --report: re-print a run's table from its raw data.
# Needs root, clang, iproute2, taskset, curl, node, and the exporter built
# with its redirect command (npm run build); this script builds only its C
# helpers. It creates one cgroup under the cgroup2 mount,
# bpfnet-bench-PID/{redirect,plain}, and one network namespace; the exporter
# is attached to bpfnet-bench-PID/redirect only, and only this benchmark's
# processes run in either. Everything is removed on exit, Ctrl-C or failure.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh

ROUNDS=10
PHASE_SECONDS=1
WARMUP=0.3
REQ_BYTES=1024          # request and reply size
WRITE_SIZE=$((256 * 1024)) # bulk: the server's write size, the client's read size
WORKLOADS=rr-direct-1,rr-direct-8,rr-direct-64,rr-proxy-1,rr-proxy-8,rr-proxy-64,rr-threads-1,rr-threads-8,rr-threads-64,bulk-direct-1,bulk-direct-4,bulk-proxy-1,bulk-proxy-4,bulk-threads-1,stall-direct-1,stall-direct-64
EXPORTER=1
REPORT=
MEM_GUARD_KB=
WORKLOAD_CPUS=${BENCH_WORKLOAD_CPU:-}
TRACER_CPU=${BENCH_TRACER_CPU:-}
# Ports in the benchmark's own network namespace: the plain (baseline) side
# and the redirect side each have a server and a proxy in front of it.
PORT_PLAIN=19000 PORT_REDIRECT=19100 # +1 echo, +2 source, +11/+12 the proxy to them, +21/+22 the threads proxy
STALL_BYTES=$((16 * 1024 * 1024)) # each stalled connection's writer sends this much

ARGS_GIVEN="$*"
usage() { sed -n '/^# Benchmark of the socket redirect/,/Ctrl-C or failure\.$/p' "$0" | sed 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
  case $1 in
    --quick) ROUNDS=3 ;;
    --rounds) ROUNDS=$2; shift ;;
    --seconds) PHASE_SECONDS=$2; shift ;;
    --warmup) WARMUP=$2; shift ;;
    --workloads) WORKLOADS=$2; shift ;;
    --request-bytes) REQ_BYTES=$2; shift ;;
    --write-size) WRITE_SIZE=$2; shift ;;
    --mem-guard) MEM_GUARD_KB=$2; shift ;;
    --cpus) WORKLOAD_CPUS=$2; shift ;;
    --no-exporter) EXPORTER=0 ;;
    --report) REPORT=$2; shift ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; exit 2 ;;
  esac
  shift
done
IFS=, read -r -a WORKLOAD_LIST <<<"$WORKLOADS"
for w in "${WORKLOAD_LIST[@]}"; do
  [[ $w =~ ^((rr|bulk)-(direct|proxy|threads)|stall-direct)-[1-9][0-9]*$ ]] || die "--workloads: $w is not KIND-PATH-CONNECTIONS (rr or bulk through direct, proxy or threads; stall-direct); see --help"
done
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || die "--rounds: a positive whole number"
[[ $REQ_BYTES =~ ^[1-9][0-9]*$ ]] || die "--request-bytes: a positive whole number"
[[ $WRITE_SIZE =~ ^[1-9][0-9]*$ ]] || die "--write-size: a positive whole number"
[[ ${MEM_GUARD_KB:-0} =~ ^[0-9]+$ ]] || die "--mem-guard: KiB, a whole number"

# ---- the results table, from the raw data of a run -------------------------
# Receive-queue prunes, drops, retransmissions and timeouts by side: the
# signs of a reader whose memory the redirect filled behind the stack's back.
tcp_events() { # dir
  local dir=$1 p side
  awk -F'\t' 'NR > 1 { print $1, $4 }' "$dir/phases.tsv" | while read -r p side; do
    [ -f "$dir/nstat/phase-$p.txt" ] && awk -v s="$side" '$1 !~ /^#/ { print s, $1, $2 }' "$dir/nstat/phase-$p.txt"
  done | awk '$2 ~ /^(TcpExtPruneCalled|TcpExtTCPRcvQDrop|TcpRetransSegs|TcpExtTCPTimeouts|TcpExtTCPLossProbes)$/ { n[$2 " " $1] += $3; k[$2] = 1 }
    END { for (c in k) printf "- %s: baseline %d, redirect %d\n", c, n[c " baseline"], n[c " redirect"] }' | sort
}


pct() { awk -v a="$1" -v b="$2" 'BEGIN { if (a > 0) printf "%+.1f %%", (b / a - 1) * 100; else printf "-" }'; }
us() { awk -v x="$1" 'BEGIN { if (x == "nan" || x == "") print "-"; else if (x >= 1000) printf "%.2f ms", x / 1000; else printf "%.1f us", x }'; }

mib() { awk -v x="$1" 'BEGIN { if (x == "nan" || x == "") print "-"; else printf "%.0f MiB", x / 1024 }'; }

# A column of phases.tsv for one workload and side.
col() { # file workload config column
  awk -F'\t' -v w="$2" -v c="$3" -v k="$4" 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == k) n = i; next } $3 == w && $4 == c { print $n }' "$1"
}

# Each redirect phase against the mean of the baseline phases on either side
# of it, seconds away: the change in percent, one a line.
paired() { # file workload column
  awk -F'\t' -v w="$2" -v k="$3" 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == k) n = i; next }
    $3 == w { cfg[$1] = $4; v[$1] = $n }
    END { for (i in cfg) if (cfg[i] == "redirect" && cfg[i - 1] == "baseline" && cfg[i + 1] == "baseline")
            print (2 * v[i] / (v[i - 1] + v[i + 1]) - 1) * 100 }' "$1"
}

# "median [low .. high]": the median change and a 95 % confidence interval of the mean.
paired_summary() { # file workload column
  local vals
  vals=$(paired "$@")
  [ -n "$vals" ] || { echo "-"; return; }
  printf '%+.1f %% [%s]' "$(median <<<"$vals")" "$(awk '{ s += $1; q += $1 * $1; n++ }
    END { m = s / n; sd = n > 1 ? sqrt((q - n * m * m) / (n - 1)) : 0; h = 1.96 * sd / sqrt(n); printf "%+.1f .. %+.1f", m - h, m + h }' <<<"$vals")"
}

# The workloads of a run whose names start with a prefix, in run order.
workloads_of() { # file prefix
  awk -F'\t' -v p="$2" 'NR > 1 && index($3, p) == 1 && !seen[$3]++ { print $3 }' "$1"
}

report() { # dir
  local dir=$1 f=$1/phases.tsv w kind path conns b r rounds rr bulk stall
  [ -s "$f" ] || die "no phases.tsv in $dir"
  rounds=$(awk -F'\t' 'NR > 1 && $2 > r { r = $2 } END { print r }' "$f")
  # the sizes that run used
  REQ_BYTES=$(sed -n 's/.*request and reply \([0-9]*\) B.*/\1/p' "$dir/machine.txt")
  WRITE_SIZE=$(sed -n 's/.*bulk writes \([0-9]*\) B.*/\1/p' "$dir/machine.txt")
  echo "## Results"
  echo
  sed 's/^/    /' "$dir/machine.txt"
  echo
  rr=$(workloads_of "$f" rr-) bulk=$(workloads_of "$f" bulk-) stall=$(workloads_of "$f" stall-)
  if [ -n "$rr" ]; then
    echo "### Request/response, $REQ_BYTES B each way: $rounds rounds, each redirect phase between two baseline phases"
    echo
    echo "Medians over the phases of each side; change = redirect / baseline - 1; paired: each redirect phase against the mean of the two baseline phases beside it, median [95 % CI of the mean]."
    echo
    echo "| path | conns | req/s baseline | req/s redirect | req/s change | p50 baseline | p50 redirect | p50 change | p50 change, paired | p99 baseline | p99 redirect | p99 change |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    for w in $rr; do
      IFS=- read -r kind path conns <<<"$w"
      printf '| %s | %s ' "$path" "$conns"
      b=$(col "$f" "$w" baseline rps | median) r=$(col "$f" "$w" redirect rps | median)
      printf '| %.0f | %s | %s ' "$b" "$(awk -v x="$r" 'BEGIN { if (x == "nan") print "-"; else printf "%.0f", x }')" "$(pct "$b" "$r")"
      b=$(col "$f" "$w" baseline p50_us | median) r=$(col "$f" "$w" redirect p50_us | median)
      printf '| %s | %s | %s | %s ' "$(us "$b")" "$(us "$r")" "$(pct "$b" "$r")" "$(paired_summary "$f" "$w" p50_us)"
      b=$(col "$f" "$w" baseline p99_us | median) r=$(col "$f" "$w" redirect p99_us | median)
      printf '| %s | %s | %s |\n' "$(us "$b")" "$(us "$r")" "$(pct "$b" "$r")"
    done
    echo
  fi
  if [ -n "$bulk" ]; then
    echo "### Bulk transfer, $WRITE_SIZE B writes: $rounds rounds"
    echo
    echo "Peak TCP memory: the most all TCP sockets of the host held at once during the window (/proc/net/sockstat), median over the phases."
    echo
    echo "| path | conns | MB/s baseline | MB/s redirect | change | change, paired | MB/s baseline min .. max | MB/s redirect min .. max | peak TCP memory baseline | peak TCP memory redirect |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    for w in $bulk; do
      IFS=- read -r kind path conns <<<"$w"
      b=$(col "$f" "$w" baseline mbps | median) r=$(col "$f" "$w" redirect mbps | median)
      printf '| %s | %s | %.0f | %s | %s | %s | %s | %s | %s | %s |\n' "$path" "$conns" "$b" \
        "$(awk -v x="$r" 'BEGIN { if (x == "nan") print "-"; else printf "%.0f", x }')" "$(pct "$b" "$r")" \
        "$(paired_summary "$f" "$w" mbps)" \
        "$(col "$f" "$w" baseline mbps | sort -g | awk 'NR == 1 { lo = $1 } { hi = $1 } END { printf "%.0f .. %.0f", lo, hi }')" \
        "$(col "$f" "$w" redirect mbps | sort -g | awk 'NR == 1 { lo = $1 } { hi = $1 } END { if (NR) printf "%.0f .. %.0f", lo, hi; else print "-" }')" \
        "$(mib "$(col "$f" "$w" baseline tcp_mem_peak_kb | median)")" "$(mib "$(col "$f" "$w" redirect tcp_mem_peak_kb | median)")"
    done
    echo
  fi
  if [ -n "$stall" ]; then
    echo "### Slow readers: writers flat out ($((STALL_BYTES / 1048576)) MiB each) against readers that read nothing, until the writers block: $rounds rounds"
    echo
    echo "Lead: the bytes the writers had sent when none had sent a byte for a second (all connections together); TCP memory: what all TCP sockets of the host held then, less before (/proc/net/sockstat); medians over the phases. Then the readers read it all: each connection's SHA-256 agreed at both ends in every phase."
    echo
    echo "| conns | lead baseline | lead redirect | lead ratio | TCP memory baseline | TCP memory redirect | memory ratio |"
    echo "|---:|---:|---:|---:|---:|---:|---:|"
    for w in $stall; do
      IFS=- read -r kind path conns <<<"$w"
      local lb lr mb mr
      lb=$(col "$f" "$w" baseline lead_bytes | median) lr=$(col "$f" "$w" redirect lead_bytes | median)
      mb=$(col "$f" "$w" baseline stall_mem_kb | median) mr=$(col "$f" "$w" redirect stall_mem_kb | median)
      awk -v c="$conns" -v lb="$lb" -v lr="$lr" -v mb="$mb" -v mr="$mr" 'function m(x) { return x == "nan" || x == "" ? "-" : sprintf("%.1f MiB", x / 1048576) }
        function k(x) { return x == "nan" || x == "" ? "-" : sprintf("%.1f MiB", x / 1024) }
        function q(a, b) { return a > 0 && b != "nan" && b != "" ? sprintf("%.2f", b / a) : "-" }
        BEGIN { printf "| %s | %s | %s | %s | %s | %s | %s |\n", c, m(lb), m(lr), q(lb, lr), k(mb), k(mr), q(mb, mr) }'
    done
    echo
  fi
  awk -F'\t' 'NR == 1 { for (i = 1; i <= NF; i++) { if ($i == "cut") c = i; if ($i == "seconds") t = i } next }
    c && $c == 1 { n[$3 " " $4]++; s[$3 " " $4] += $t }
    END { for (k in n) printf "Memory guard: %d %s phases ended early (after %.2f s on average).\n", n[k], k, s[k] / n[k] }' "$f" | sort
  echo
  echo "### Was the traffic redirected? The exporter's counters, scraped after every phase"
  echo
  if awk -F'\t' 'NR == 2 { exit $12 != "-" }' "$f"; then
    echo "The exporter was not started (--no-exporter): both sides ran without redirect."
    echo
    echo "Raw data: $dir/"
    return 0
  fi
  echo "Change of each counter over a phase (for the proxy paths, the two hops together); median over the phases of each side, and the smallest redirect phase's figure."
  echo
  echo "| workload | side | phases | messages | bytes | connections | fallbacks | smallest messages / bytes |"
  echo "|---|---|---:|---:|---:|---:|---:|---:|"
  for w in $(workloads_of "$f" ""); do
    for c in baseline redirect; do
      [ -n "$(col "$f" "$w" "$c" messages)" ] || continue
      printf '| %s | %s | %s | %s | %s | %s | %s | %s |\n' "$w" "$c" "$(col "$f" "$w" "$c" messages | wc -l)" \
        "$(col "$f" "$w" "$c" messages | median)" "$(col "$f" "$w" "$c" bytes | median)" \
        "$(col "$f" "$w" "$c" connections | median)" "$(col "$f" "$w" "$c" fallbacks | median)" \
        "$(paste <(col "$f" "$w" "$c" messages) <(col "$f" "$w" "$c" bytes) | sort -g | head -1 | awk '{ print $1 " / " $2 }')"
    done
  done
  echo
  if [ -s "$dir/fallbacks.txt" ]; then
    echo "Fallbacks over the whole run, by reason (last scrape minus the first):"
    echo
    sed 's/^/- /' "$dir/fallbacks.txt"
    echo
  fi
  if [ -d "$dir/nstat" ]; then
    echo "TCP's own counters in the benchmark's namespace (nstat), summed over the phases of each side:"
    echo
    tcp_events "$dir"
    echo
  fi
  awk -F'\t' 'NR > 1 && $4 == "redirect" && $12 != "-" && $12 + 0 == 0 { n++ }
    END { if (n) printf "WARNING: %d redirect phases moved no message through the redirect.\n\n", n }' "$f"
  awk -F'\t' 'NR > 1 && $4 == "baseline" && $12 != "-" && $12 + 0 > 0 { n++ }
    END { if (n) printf "WARNING: in %d baseline phases the exporter counted redirected messages: the plain cgroup was not plain.\n\n", n }' "$f"
  if [ -s "$dir/warnings.txt" ]; then
    echo "Warnings:"
    echo
    sed 's/^/- /' "$dir/warnings.txt"
    echo
  fi
  echo "Raw data: $dir/"
}

if [ -n "$REPORT" ]; then
  report "${REPORT%/}"
  exit 0
fi

# ---- the run ---------------------------------------------------------------

[ "$(id -u)" = 0 ] || die "run as root: it creates a cgroup and a network namespace and attaches BPF programs"
for tool in clang ip taskset curl node; do
  command -v "$tool" >/dev/null || die "$tool is missing"
done
CG2=$(awk '$3 == "cgroup2" { print $2; exit }' /proc/mounts)
[ -n "$CG2" ] && [ -w "$CG2/cgroup.procs" ] || die "no writable cgroup v2 mount in /proc/mounts"
if [ "$EXPORTER" = 1 ]; then
  [ -s build/js/src/cli.js ] || die "the exporter is not built: npm run build"
  # (an unknown command falls back to the default one's help, exiting 0:
  # look for the redirect command's own flag)
  node build/js/src/cli.js redirect --help 2>&1 | grep -q -- --redirect-cgroup ||
    die "this build of the exporter has no redirect command (node build/js/src/cli.js redirect --help); build it with npm run build, or measure without it: --no-exporter"
fi

# Pinning on a 2-core machine: client, proxy and server, and with them the
# loopback softirq work and every BPF program run, share one CPU, so each
# nanosecond the TCP path saves or adds shows; the exporter's user space (a
# node process that is idle but for the scrapes) has the other.
NCPU=$(nproc)
# the lowest tcp_mem threshold: below it the kernel does not regulate TCP
# memory at all; pressure starts at the second
MEM_GUARD_KB=${MEM_GUARD_KB:-$(awk -v p="$(getconf PAGESIZE)" '{ printf "%d\n", $1 * p / 1024 }' /proc/sys/net/ipv4/tcp_mem)}
if [ "$NCPU" -ge 2 ]; then
  WORKLOAD_CPUS=${WORKLOAD_CPUS:-1} TRACER_CPU=${TRACER_CPU:-0}
fi

CG= PIN_DIR=
redirect_cleanup() {
  local d i
  cleanup # bench/lib.sh: stops every registered process, deletes the namespace
  [ -n "$CG" ] || return 0
  # an exporter that had to be killed leaves its pins (and with them its
  # programs attached to our cgroup); they are ours to remove
  if [ -n "$PIN_DIR" ] && [ -d "$PIN_DIR" ]; then
    log "bench: removing the exporter's leftover pins in $PIN_DIR"
    rm -f "$PIN_DIR"/* && rmdir "$PIN_DIR" || true
  fi
  for d in "$CG/redirect" "$CG/plain" "$CG"; do
    [ -d "$d" ] || continue
    # whatever is still inside is the benchmark's: only its processes were moved in
    [ ! -e "$d/cgroup.kill" ] || echo 1 2>/dev/null >"$d/cgroup.kill" || true
    for ((i = 0; i < 100; i++)); do
      rmdir "$d" 2>/dev/null && break
      sleep 0.1 # EBUSY until the killed processes are reaped
    done
    [ ! -d "$d" ] || log "bench: could not remove the cgroup $d: $(cat "$d/cgroup.procs" 2>/dev/null | tr '\n' ' ')"
  done
  return 0
}
bench_start redirect_cleanup
for prog in server client proxy proxy-threads; do
  clang -O2 -Wall -Wextra -pthread -o "$BIN/redirect-$prog" "bench/redirect-$prog.c"
done
clang -O2 -Wall -Wextra -pthread -o "$BIN/slow-peer" bench/slow-peer.c -lcrypto

CG=$CG2/bpfnet-bench-$$
mkdir "$CG" "$CG/redirect" "$CG/plain"
# where the exporter pins its maps and link for this cgroup (by cgroup id)
PIN_DIR=/sys/fs/bpf/bpfnet-exporter/redirect-$(stat -c %i "$CG/redirect")
make_netns redirect
NS=$NETNS

# Starts a command in one of the benchmark's cgroups (before it can open a
# socket: a socket belongs to the cgroup of the process that created it,
# and an accepted one to its listener's), inside the benchmark's network
# namespace, on the workload CPUs. Run as "${CMD[@]}" &, $! is the command itself.
in_cgroup() { # cgroup-dir cmd...
  local cg=$1
  shift
  CMD=(sh -c 'echo $$ >"$1/cgroup.procs" && shift && exec "$@"' sh "$cg" ip netns exec "$NS")
  [ -z "${WORKLOAD_CPUS:-}" ] || CMD+=(taskset -c "$WORKLOAD_CPUS")
  CMD+=("$@")
}

# A server and a proxy in front of it, in a cgroup, listening from port base+1.
start_side() { # cgroup-dir port-base
  local base=$2 i
  : >"$BENCH_TMP/server-$base.out"
  : >"$BENCH_TMP/proxy-$base.out" # before the children open them: read below at once
  : >"$BENCH_TMP/threads-$base.out"
  in_cgroup "$1" "$BIN/redirect-server" -e $((base + 1)) -b "$REQ_BYTES" -s $((base + 2)) -W "$WRITE_SIZE"
  "${CMD[@]}" >"$BENCH_TMP/server-$base.out" &
  track_pid $!
  in_cgroup "$1" "$BIN/redirect-proxy" -B "$WRITE_SIZE" $((base + 11)):$((base + 1)) $((base + 12)):$((base + 2))
  "${CMD[@]}" >"$BENCH_TMP/proxy-$base.out" &
  track_pid $!
  in_cgroup "$1" "$BIN/redirect-proxy-threads" -B "$WRITE_SIZE" $((base + 21)):$((base + 1)) $((base + 22)):$((base + 2))
  "${CMD[@]}" >"$BENCH_TMP/threads-$base.out" &
  track_pid $!
  for ((i = 0; i < 100; i++)); do
    [ "$(cat "$BENCH_TMP/server-$base.out" "$BENCH_TMP/proxy-$base.out" "$BENCH_TMP/threads-$base.out")" = $'ready\nready\nready' ] && return 0
    sleep 0.05
  done
  die "the server or the proxies on ports $((base + 1))+ did not start"
}

# The sum of every sample of a metric (all label sets), 0 if absent.
metric_sum() { # file name
  awk -v m="$2" '{ n = $1; sub(/\{.*/, "", n) } n == m && $1 !~ /^#/ { s += $2 } END { printf "%.15g\n", s + 0 }' "$1"
}

REDIRECT_METRICS=(bpfnet_redirect_messages_total bpfnet_redirect_bytes_total bpfnet_redirect_connections_total bpfnet_redirect_fallbacks_total)

# The four redirect counters now, tab-separated; "-" without the exporter.
redirect_counters() { # scrape-file
  local m out=()
  if [ -z "${EXP_PID:-}" ]; then echo $'-\t-\t-\t-'; return; fi
  kill -0 "$EXP_PID" 2>/dev/null || die "the exporter stopped: $(tail -3 "$BENCH_TMP/exporter.log")"
  scrape "$1"
  for m in "${REDIRECT_METRICS[@]}"; do out+=("$(metric_sum "$1" "$m")"); done
  (IFS=$'\t'; echo "${out[*]}")
}

# TCP memory of the host now, KiB (/proc/net/sockstat counts pages).
tcp_mem_kb() {
  awk -v p="$(getconf PAGESIZE)" '$1 == "TCP:" { for (i = 2; i < NF; i++) if ($i == "mem") printf "%d\n", $(i + 1) * p / 1024 }' /proc/net/sockstat
}

# The slow-reader phase, in a cgroup: conns writers flat out against readers
# that read nothing; once no writer has sent a byte for a second they are
# blocked: how far ahead they got (all together) and the TCP memory that
# took. Then the readers read everything, and each connection's SHA-256 must
# be the same at both ends. Prints a line as redirect-client does.
run_stall() { # cgroup conns
  local cg=$1 n=$2 t0 mem0 mem last= now same=0 i port rpid wpid
  t0=$(date +%s.%N)
  mem0=$(tcp_mem_kb)
  rm -f "$BENCH_TMP/go"
  mkfifo "$BENCH_TMP/go"
  exec 8<>"$BENCH_TMP/go" # read-write: opens at once, and keeps the reader's stdin open
  : >"$BENCH_TMP/stall-read.out"
  in_cgroup "$cg" "$BIN/slow-peer" read -n "$n"
  "${CMD[@]}" <"$BENCH_TMP/go" >"$BENCH_TMP/stall-read.out" 2>>"$BENCH_TMP/client.err" &
  rpid=$!
  track_pid "$rpid"
  for ((i = 0; i < 100; i++)); do
    port=$(awk '$1 == "ready" { print $2 }' "$BENCH_TMP/stall-read.out")
    [ -z "$port" ] || break
    sleep 0.05
  done
  [ -n "$port" ] || die "the slow reader did not start: $(cat "$BENCH_TMP/client.err")"
  in_cgroup "$cg" "$BIN/slow-peer" write -p "$port" -n "$n" -B "$STALL_BYTES"
  "${CMD[@]}" >"$BENCH_TMP/stall-write.out" 2>>"$BENCH_TMP/client.err" &
  wpid=$!
  track_pid "$wpid"
  for ((i = 0; i < 600 && same < 10; i++)); do
    sleep 0.1
    now=$(awk '$1 == "sent" { s = $3 } END { print s + 0 }' "$BENCH_TMP/stall-write.out")
    if [ "$now" = "$last" ] && [ "$now" != 0 ]; then same=$((same + 1)); else same=0; fi
    last=$now
  done
  [ "$same" -ge 10 ] || die "the writers never blocked ($last bytes sent)"
  mem=$(($(tcp_mem_kb) - mem0))
  echo go >&8
  wait "$wpid" || die "a writer failed: $(grep '^error' "$BENCH_TMP/stall-write.out" | head -3)"
  wait "$rpid" || die "the reader failed: $(tail -3 "$BENCH_TMP/client.err")"
  untrack_pid "$wpid"
  untrack_pid "$rpid"
  exec 8>&-
  [ "$(awk '$1 == "wrote" { print $2, $3, $4 }' "$BENCH_TMP/stall-write.out" | sort)" = \
    "$(awk '$1 == "read" { print $2, $3, $4 }' "$BENCH_TMP/stall-read.out" | sort)" ] ||
    die "a slow reader's connection did not arrive whole"
  echo "mode=stall conns=$n lead_bytes=$last stall_mem_kb=$mem seconds=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.3f", b - a }') errors=0"
}

PHASE=0
# One phase: a fresh client on one side, new connections, a warm-up and a
# measured window; then the redirect counters' change over it.
run_phase() { # round workload config
  local round=$1 w=$2 cfg=$3 kind path conns cg base port args pid line before after d
  IFS=- read -r kind path conns <<<"$w"
  if [ "$cfg" = redirect ]; then cg=$CG/redirect base=$PORT_REDIRECT; else cg=$CG/plain base=$PORT_PLAIN; fi
  case $kind-$path in
    rr-direct) port=$((base + 1)) ;;
    bulk-direct) port=$((base + 2)) ;;
    rr-proxy) port=$((base + 11)) ;;
    bulk-proxy) port=$((base + 12)) ;;
    rr-threads) port=$((base + 21)) ;;
    bulk-threads) port=$((base + 22)) ;;
    stall-direct) port=0 ;; # the slow reader listens on a port of its own
  esac
  args=(-p "$port" -c "$conns" -t "$PHASE_SECONDS" -w "$WARMUP" -m "$MEM_GUARD_KB")
  if [ "$kind" = rr ]; then args+=(-b "$REQ_BYTES"); else args+=(-r "$WRITE_SIZE"); fi
  before=$(redirect_counters "$BENCH_TMP/before.prom")
  PHASE=$((PHASE + 1))
  ip netns exec "$NS" nstat -n
  : >"$BENCH_TMP/client.err"
  if [ "$kind" = stall ]; then
    run_stall "$cg" "$conns" >"$BENCH_TMP/client.out"
    line=$(cat "$BENCH_TMP/client.out")
  else
    in_cgroup "$cg" "$BIN/redirect-client" "$kind" "${args[@]}"
    "${CMD[@]}" >"$BENCH_TMP/client.out" 2>"$BENCH_TMP/client.err" &
    pid=$!
    track_pid "$pid"
    wait "$pid" || die "the client failed in phase $PHASE ($w, $cfg): $(tail -3 "$BENCH_TMP/client.err") $(cat "$BENCH_TMP/client.out")"
    untrack_pid "$pid"
    line=$(cat "$BENCH_TMP/client.out")
  fi
  echo "$PHASE $w $cfg $line" >>"$OUT/clients.txt"
  ip netns exec "$NS" nstat >"$OUT/nstat/phase-$PHASE.txt"
  after=$(redirect_counters "$BENCH_TMP/after.prom")
  [ -z "${EXP_PID:-}" ] || grep '^bpfnet_redirect' "$BENCH_TMP/after.prom" >"$OUT/metrics/phase-$PHASE.prom" || true
  d=$(paste <(tr '\t' '\n' <<<"$before") <(tr '\t' '\n' <<<"$after") |
    awk '$1 == "-" { print "-"; next } { printf "%.15g\n", $2 - $1 }' | paste -sd '\t')
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$PHASE" "$round" "$w" "$cfg" "$(date +%s.%N)" \
    "$(field rps "$line")" "$(field p50_us "$line")" "$(field p99_us "$line")" "$(field mbps "$line")" \
    "$(field requests "$line")" "$([ "$kind" = bulk ] && field bytes "$line")" "$d" "$(field tcp_mem_peak_kb "$line")" "$(field cut "$line")" "$(field seconds "$line")" \
    "$(field lead_bytes "$line")" "$(field stall_mem_kb "$line")" | sed 's/\t\t/\t-\t/g; s/\t\t/\t-\t/g; s/\t$/\t-/' >>"$OUT/phases.tsv"
}

# Fallbacks by reason over the run, from two scrapes.
fallbacks_by_reason() { # first last
  awk '$1 ~ /^bpfnet_redirect_fallbacks_total\{/ { if (FNR == NR) a[$1] = $2; else b[$1] = $2 }
    END { for (k in b) if (b[k] - a[k] > 0) printf "%s: %.15g\n", k, b[k] - a[k] }' "$1" "$2" | sort
}

started=$(date +%s)
{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "machine: $NCPU CPUs ($(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)), kernel $(uname -r)"
  echo "node $(node --version)"
  echo "exporter: commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD -- src bpf 2>/dev/null || echo ', with uncommitted changes in src/ or bpf/')$([ "$EXPORTER" = 1 ] || echo '; not started (--no-exporter): both sides run without redirect')"
  echo "pinning: client, proxy and server on CPU ${WORKLOAD_CPUS:-any}, the exporter on CPU ${TRACER_CPU:-any}"
  echo "phases: $ROUNDS rounds of each workload, baseline and redirect in turns (B R B ... R B), ${WARMUP} s warm-up and ${PHASE_SECONDS} s measured each, new connections in each"
  echo "workloads: $WORKLOADS; request and reply $REQ_BYTES B, bulk writes $WRITE_SIZE B"
  echo "memory guard: a window ends early past $MEM_GUARD_KB KiB of TCP memory (net.ipv4.tcp_mem: $(cat /proc/sys/net/ipv4/tcp_mem | tr '\t' ' ') pages)"
  echo "cgroups: $CG/redirect (redirect), $CG/plain (baseline); network namespace $NS"
  echo "command: bash bench/redirect.sh $ARGS_GIVEN"
} | tee "$OUT/machine.txt" >&2

start_side "$CG/plain" "$PORT_PLAIN"
start_side "$CG/redirect" "$PORT_REDIRECT"
EXP_PID=
mkdir -p "$OUT/metrics" "$OUT/nstat"
if [ "$EXPORTER" = 1 ]; then
  # the redirect command, attached to the redirect side's cgroup only
  EXPORTER_COMMAND=redirect start_exporter "$TRACER_CPU" --redirect-cgroup "$CG/redirect"
  log "exporter ready at $EXP_ADDR, attached to $CG/redirect"
  scrape "$OUT/first.prom"
fi

printf 'phase\tround\tworkload\tconfig\tend\trps\tp50_us\tp99_us\tmbps\trequests\tclient_bytes\tmessages\tbytes\tconnections\tfallbacks\ttcp_mem_peak_kb\tcut\tseconds\tlead_bytes\tstall_mem_kb\n' >"$OUT/phases.tsv"
for w in "${WORKLOAD_LIST[@]}"; do
  for ((r = 1; r <= ROUNDS; r++)); do
    run_phase "$r" "$w" baseline
    run_phase "$r" "$w" redirect
  done
  run_phase "$ROUNDS" "$w" baseline
  log "  $w: $ROUNDS rounds done"
done

if [ "$EXPORTER" = 1 ]; then
  scrape "$OUT/last.prom"
  fallbacks_by_reason "$OUT/first.prom" "$OUT/last.prom" >"$OUT/fallbacks.txt"
  stop_exporter
fi
echo "seconds: $(($(date +%s) - started))" >>"$OUT/machine.txt"
log ""
report "$OUT" | tee "$OUT/results.md"
