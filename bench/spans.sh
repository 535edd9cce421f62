#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Benchmark of the span path: how many connection-close events a second the
# event path carries (the kernel's ring buffer, decoding, one span each,
# OTLP/HTTP export) with no event lost in the kernel, and the exporter's CPU
# and memory at that rate. A connection churn (bench/churn.c) in a network
# namespace makes two close events per connection (client and server); the
# exporter runs --probes close --netns of it --otlp-endpoint to a sink
# (bench/otlp-sink.js) and sends a span for each. Steps of more client
# threads raise the rate; each step measures for S seconds:
#   events/s: closes the exporter counted (bpfnet_tcp_closes_total);
#   lost: bpfnet_events_lost_total; spans exported and dropped;
#   exporter CPU: user + system time over the window, as a share of one core
#   (it is pinned to CPU 0; the churn and the sink run on CPU 1);
#   RSS: the exporter's resident memory at the end of the step.
# Capacity on one core = events/s / CPU share, where the share is below 1.
# Then the capacity itself, since one CPU of churn makes fewer events than
# one core of exporter can carry: a drain. The exporter (a 64 MiB ring, a
# 262,144-span queue) is stopped (SIGSTOP) while the churn makes events for
# --drain-seconds, then continued; the time and CPU it takes until every
# event is a span the sink accepted is its rate flat out, on one core.
# Each OTLP encoding (--protocols: http/protobuf, the default, and http/json)
# gets the same steps, in one run, with an exporter of its own.
#
#   bash bench/spans.sh [--seconds S] [--clients LIST] [--protocols LIST]
#                       [--drain-seconds S] [--no-build]
#
# Needs root, clang, iproute2, taskset, curl, node and the built exporter.
# Everything it starts runs in a network namespace of its own and is removed
# on exit, Ctrl-C or failure.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh

SECONDS_PER_STEP=10
CLIENTS_LIST=1,2,4,8
PROTOCOLS=http/protobuf,http/json
DRAIN_SECONDS=8
BUILD=1
ARGS_GIVEN="$*"
usage() { sed -n '/^# Benchmark of the span path/,/^# on exit, Ctrl-C or failure\.$/p' "$0" | sed 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
  case $1 in
    --seconds) SECONDS_PER_STEP=$2; shift ;;
    --clients) CLIENTS_LIST=$2; shift ;;
    --protocols) PROTOCOLS=$2; shift ;;
    --drain-seconds) DRAIN_SECONDS=$2; shift ;;
    --no-build) BUILD=0 ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; exit 2 ;;
  esac
  shift
done
[[ $SECONDS_PER_STEP =~ ^[1-9][0-9]*$ ]] || die "--seconds: a positive whole number"
[[ $CLIENTS_LIST =~ ^[1-9][0-9]*(,[1-9][0-9]*)*$ ]] || die "--clients: positive whole numbers, comma-separated"
[[ $DRAIN_SECONDS =~ ^[0-9]+$ ]] || die "--drain-seconds: a whole number (0: no drain)"
[[ $PROTOCOLS =~ ^http/(protobuf|json)(,http/(protobuf|json))*$ ]] || die "--protocols: http/protobuf, http/json or both, comma-separated"
[ "$(id -u)" = 0 ] || die "run as root: it creates a network namespace and loads BPF programs"
for tool in clang ip taskset curl node; do command -v "$tool" >/dev/null || die "$tool is missing"; done

bench_start
[ "$BUILD" = 0 ] || npm run build >/dev/null
clang -O2 -Wall -Wextra -pthread -o "$BIN/churn" bench/churn.c
TRACER_CPU=0 WORKLOAD_CPU=1
[ "$(nproc)" -ge 2 ] || TRACER_CPU= WORKLOAD_CPU=

make_netns spans
NS=$NETNS
ip netns exec "$NS" sysctl -qw net.ipv4.ip_local_port_range="1024 65535" net.ipv4.tcp_max_tw_buckets=16384

pinned "$WORKLOAD_CPU" node bench/otlp-sink.js
"${CMD[@]}" >"$BENCH_TMP/sink.out" &
SINK_PID=$!
track_pid "$SINK_PID"
for ((i = 0; i < 100; i++)); do
  SINK_PORT=$(sed -n 's/^ready //p' "$BENCH_TMP/sink.out")
  [ -n "$SINK_PORT" ] && break
  sleep 0.05
done
[ -n "$SINK_PORT" ] || die "the OTLP sink did not start"

# a queue and batches sized for tens of thousands of spans a second
export OTEL_BSP_MAX_QUEUE_SIZE=65536 OTEL_BSP_MAX_EXPORT_BATCH_SIZE=4096 OTEL_BSP_SCHEDULE_DELAY=200

{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "machine: $(nproc) CPUs ($(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)), kernel $(uname -r), node $(node --version)"
  echo "exporter: commit $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- src bpf || echo ', with uncommitted changes'); --probes close, spans to a sink; OTEL_BSP_MAX_QUEUE_SIZE=65536, _MAX_EXPORT_BATCH_SIZE=4096, _SCHEDULE_DELAY=200"
  echo "pinning: exporter on CPU ${TRACER_CPU:-any}; churn and sink on CPU ${WORKLOAD_CPU:-any}"
  echo "steps: churn with $CLIENTS_LIST client threads, ${SECONDS_PER_STEP} s each, after 2 s of warm-up, for each of $PROTOCOLS"
  echo "command: bash bench/spans.sh $ARGS_GIVEN"
} | tee "$OUT/machine.txt" >&2

rss_kib() { awk '/^VmRSS:/ { print $2 }' /proc/"$1"/status; }

TCK=$(getconf CLK_TCK)
# A metric's sum over all its label sets in a scraped file.
sum_of() { awk -v m="$2" 'index($1, m) == 1 { s += $2 } END { printf "%.15g\n", s + 0 }' "$1"; }

# The drain of one encoding: a row of drain.md.
drain() { # protocol
  local a=$BENCH_TMP/drain-a.prom b=$BENCH_TMP/drain-b.prom t0 t1 k0 k1 events done_ i
  OTEL_BSP_MAX_QUEUE_SIZE=262144 OTEL_EXPORTER_OTLP_TRACES_PROTOCOL=$1 start_exporter "$TRACER_CPU" --probes close \
    --netns "/run/netns/$NS" --otlp-endpoint "http://127.0.0.1:$SINK_PORT" --event-ring-bytes 67108864
  scrape "$a"
  kill -STOP "$EXP_PID"
  ip netns exec "$NS" ${WORKLOAD_CPU:+taskset -c "$WORKLOAD_CPU"} "$BIN/churn" -t "$DRAIN_SECONDS" -w 0 -c 4 -n 4 -b 64 >"$BENCH_TMP/churn.out" \
    || { kill -CONT "$EXP_PID"; die "churn failed"; }
  k0=$(cpu_ticks "$EXP_PID")
  t0=$(date +%s.%N)
  kill -CONT "$EXP_PID"
  for ((i = 0; i < 1200; i++)); do
    scrape "$b"
    events=$(($(sum_of "$b" bpfnet_tcp_closes_total) - $(sum_of "$a" bpfnet_tcp_closes_total)))
    done_=$(awk -v e="$(sum_of "$b" bpfnet_spans_exported_total)" -v d="$(sum_of "$b" bpfnet_spans_dropped_total)" \
      -v l="$(sum_of "$b" bpfnet_events_lost_total)" 'BEGIN { print e + d + l }')
    [ "$done_" -ge "$events" ] && break
    sleep 0.1
  done
  t1=$(date +%s.%N)
  k1=$(cpu_ticks "$EXP_PID")
  awk -v p="$1" -v n="$events" -v t0="$t0" -v t1="$t1" -v ticks=$((k1 - k0)) -v tck="$TCK" \
      -v lost="$(sum_of "$b" bpfnet_events_lost_total)" -v ex="$(sum_of "$b" bpfnet_spans_exported_total)" \
      -v dr="$(sum_of "$b" bpfnet_spans_dropped_total)" -v hwm="$(awk '/^VmHWM:/ { print $2 }' /proc/"$EXP_PID"/status)" 'BEGIN {
    s = t1 - t0; cpu = ticks / tck
    printf "| %s | %d | %d | %d | %d | %.2f s | %.2f s | %.0f | %.0f | %.0f MiB |\n", p, n, lost, ex, dr, s, cpu, n / s, n / cpu, hwm / 1024 }' >>"$OUT/drain.md"
  log "  drain: $(tail -1 "$OUT/drain.md")"
  cp "$b" "$OUT/metrics-drain-${1#http/}.prom"
  stop_exporter
}
printf '| protocol | client threads | events/s | lost | spans exported | spans dropped | exporter CPU (one core) | events/s per core | RSS |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|\n' >"$OUT/results.md"
IFS=, read -r -a STEPS <<<"$CLIENTS_LIST"
IFS=, read -r -a PROTOS <<<"$PROTOCOLS"
for proto in "${PROTOS[@]}"; do
OTEL_EXPORTER_OTLP_TRACES_PROTOCOL=$proto start_exporter "$TRACER_CPU" --probes close --netns "/run/netns/$NS" --otlp-endpoint "http://127.0.0.1:$SINK_PORT"
for c in "${STEPS[@]}"; do
  ip netns exec "$NS" ${WORKLOAD_CPU:+taskset -c "$WORKLOAD_CPU"} "$BIN/churn" -t $((SECONDS_PER_STEP + 2)) -w 0.1 -c "$c" -n 4 -b 64 >"$BENCH_TMP/churn.out" &
  churn=$!
  track_pid "$churn"
  sleep 2
  scrape "$BENCH_TMP/a.prom"
  t0=$(cpu_ticks "$EXP_PID")
  sleep "$SECONDS_PER_STEP"
  scrape "$BENCH_TMP/b.prom"
  t1=$(cpu_ticks "$EXP_PID")
  rss=$(rss_kib "$EXP_PID")
  wait "$churn" || die "churn failed"
  untrack_pid "$churn"
  sleep 1 # the last spans leave
  scrape "$BENCH_TMP/c.prom"
  closes=$(($(sum_of "$BENCH_TMP/b.prom" bpfnet_tcp_closes_total) - $(sum_of "$BENCH_TMP/a.prom" bpfnet_tcp_closes_total)))
  lost=$(sum_of "$BENCH_TMP/c.prom" bpfnet_events_lost_total)
  exported=$(($(sum_of "$BENCH_TMP/c.prom" bpfnet_spans_exported_total) - $(sum_of "$BENCH_TMP/a.prom" bpfnet_spans_exported_total)))
  dropped=$(sum_of "$BENCH_TMP/c.prom" bpfnet_spans_dropped_total)
  awk -v p="$proto" -v c="$c" -v n="$closes" -v s="$SECONDS_PER_STEP" -v lost="$lost" -v ex="$exported" -v dr="$dropped" \
      -v ticks=$((t1 - t0)) -v tck="$TCK" -v rss="$rss" 'BEGIN {
    rate = n / s; cpu = ticks / tck / s; per = "-"
    if (cpu > 0) per = sprintf("%.0f", rate / cpu)
    printf "| %s | %d | %.0f | %d | %d | %d | %.1f %% | %s | %.0f MiB |\n", p, c, rate, lost, ex, dr, cpu * 100, per, rss / 1024 }' >>"$OUT/results.md"
  log "  $c client threads: $(tail -1 "$OUT/results.md")"
  cp "$BENCH_TMP/c.prom" "$OUT/metrics-${proto#http/}-$c.prom"
done
stop_exporter
if [ "$DRAIN_SECONDS" -gt 0 ]; then
  [ -s "$OUT/drain.md" ] || printf '| protocol | events | lost | spans exported | spans dropped | drain time | exporter CPU | events/s | events per CPU-second | peak RSS |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n' >"$OUT/drain.md"
  drain "$proto"
fi
done
stop_pid "$SINK_PID" TERM
log ""
{
  echo "## Results"; echo; sed 's/^/    /' "$OUT/machine.txt"; echo; cat "$OUT/results.md"; echo
  if [ -s "$OUT/drain.md" ]; then echo "Drain of ${DRAIN_SECONDS} s of churn's events, flat out on one core:"; echo; cat "$OUT/drain.md"; echo; fi
  echo "Raw data: $OUT/"
} | tee "$OUT/report.md"
