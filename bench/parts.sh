# SPDX-License-Identifier: Apache-2.0
# The three measurements of bench/run.sh. Each writes raw data into $OUT for
# bench/report.sh and logs progress on stderr. Sourced, not run.

CONN_METRIC='bpfnet_tcp_connects_total{family="ipv4",result="established"}'

# The churn namespace, made once: loopback up, a bounded TIME_WAIT
# population (every round starts from the same table size rather than the
# previous rounds' leftovers) and a wide port range (clients never run out).
churn_netns() {
  [ -n "${CHURN_NS:-}" ] && return 0
  make_netns churn
  CHURN_NS=$NETNS
  ip netns exec "$CHURN_NS" sysctl -qw net.ipv4.ip_local_port_range="1024 65535" net.ipv4.tcp_max_tw_buckets=16384
}

# One churn run on the workload CPU; its result line in CHURN.
run_churn() { # seconds
  ip netns exec "$CHURN_NS" ${WORKLOAD_CPU:+taskset -c "$WORKLOAD_CPU"} \
    "$BIN/churn" -t "$1" -w "$WARMUP" -c "$CLIENTS" -n "$SERVER_PORTS" -b 1024 >"$BENCH_TMP/churn.out" &
  local pid=$!
  track_pid "$pid"
  wait "$pid" || die "churn failed"
  untrack_pid "$pid"
  CHURN=$(cat "$BENCH_TMP/churn.out")
}

# Starts what a configuration runs beside the churn; TRACER_PID is its process.
start_config() { # config
  TRACER_PID=
  case $1 in
    baseline) ;;
    exporter) start_exporter "$TRACER_CPU" --probes connect,accept,close ;;
    exporter-connect) start_exporter "$TRACER_CPU" --probes connect ;;
    exporter-netns) start_exporter "$TRACER_CPU" --probes connect,accept,close --netns "/run/netns/$CHURN_NS" ;;
    exporter=*) EXPORTER_ROOT=${1#exporter=} start_exporter "$TRACER_CPU" --probes connect,accept,close ;;
    tcplife) start_tcplife "$TRACER_CPU"; TRACER_PID=$TCPLIFE_PID ;;
  esac
  [[ $1 == exporter* ]] && TRACER_PID=$EXP_PID
  return 0
}

stop_config() { # config
  case $1 in
    exporter*) stop_exporter ;;
    tcplife) stop_tcplife ;;
  esac
}

# BPF programs of others on the same tracepoint add cost to every
# configuration alike; worth knowing when reading the figures.
foreign_tracers() {
  bpftool prog show 2>/dev/null | grep -cE 'name (tcp_state|inet_sock_set_state|handle_set_state)' || true
}

# Part 1. One churn process runs throughout, sampled every 100 ms, while the
# configurations take turns: baseline, tracer, baseline, next tracer, ...,
# baseline. Each phase is rated over a window that starts GUARD seconds after
# the switch (start-up and tear-down are not measured) and lasts
# PHASE_SECONDS. Short phases with a baseline on each side of every tracer
# phase: this machine's speed shifts by 10-30 % every few seconds, so a
# tracer phase is compared with the baselines just before and after it.
part_churn() {
  local r t cfg i=0 churn_pid
  churn_netns
  log ""
  log "part 1: churn, $ROUNDS rounds of $CONFIGS; programs of others on inet_sock_set_state: $(foreign_tracers)"
  ip netns exec "$CHURN_NS" ${WORKLOAD_CPU:+taskset -c "$WORKLOAD_CPU"} \
    "$BIN/churn" -i 100 -c "$CLIENTS" -n "$SERVER_PORTS" -b 1024 >"$OUT/samples.txt" &
  churn_pid=$!
  track_pid "$churn_pid"
  sleep "$WARMUP"
  printf 'phase\tround\tconfig\tstart\tend\ttracer_ticks\tcounted\n' >"$OUT/phases.tsv"
  for ((r = 1; r <= ROUNDS; r++)); do
    for t in "${TRACERS[@]}"; do
      run_phase $((i += 1)) "$r" baseline
      run_phase $((i += 1)) "$r" "$t"
    done
    log "  round $r of $ROUNDS done"
  done
  run_phase $((i + 1)) "$ROUNDS" baseline
  sleep 0.3 # a sample after the last window closes, to rate it
  kill -0 "$churn_pid" 2>/dev/null || die "churn stopped early"
  stop_pid "$churn_pid"
  rate_phases "$OUT/phases.tsv" "$OUT/samples.txt" >"$OUT/rounds.tsv"
  log "  programs of others on inet_sock_set_state at the end: $(foreign_tracers)"
}

run_phase() { # phase round config
  local t0 t1 ticks=0 counted=-
  start_config "$3"
  sleep "$GUARD"
  [ -z "$TRACER_PID" ] || ticks=$(cpu_ticks "$TRACER_PID")
  t0=$EPOCHREALTIME
  sleep "$PHASE_SECONDS"
  t1=$EPOCHREALTIME
  [ -z "$TRACER_PID" ] || ticks=$(($(cpu_ticks "$TRACER_PID") - ticks))
  if [[ $3 == exporter* ]]; then
    # its count since it started, for a check that it saw the connections
    scrape "$BENCH_TMP/phase.prom"
    counted=$(sample "$BENCH_TMP/phase.prom" "$CONN_METRIC")
  fi
  stop_config "$3"
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$t0" "$t1" "$ticks" "$counted" >>"$OUT/phases.tsv"
}

# Rates each phase's window from the churn samples (totals, linearly
# interpolated at the window's ends).
rate_phases() { # phases.tsv samples.txt
  awk -F'\t' -v hz="$(getconf CLK_TCK)" '
    FNR == NR { if (split($0, f, " ") == 4 && f[1] == "sample") { n++; ts[n] = f[2]; cs[n] = f[3]; cpu[n] = f[4] } next }
    function at(t, v,   j) {
      for (j = 1; j < n && ts[j + 1] < t; j++) ;
      if (j >= n) return -1
      return v[j] + (v[j + 1] - v[j]) * (t - ts[j]) / (ts[j + 1] - ts[j])
    }
    FNR == 1 { print "phase\tround\tconfig\trate\tper_cpu_second\ttracer_cpu_pct\tcounted\tconnections"; next }
    {
      c0 = at($4, cs); c1 = at($5, cs); u0 = at($4, cpu); u1 = at($5, cpu)
      if (c0 < 0 || c1 < 0) next
      conns = c1 - c0
      per_cpu = u1 > u0 ? conns / (u1 - u0) : 0
      tracer = $3 == "baseline" ? "-" : sprintf("%.1f", $6 / hz / ($5 - $4) * 100)
      printf "%s\t%s\t%s\t%.1f\t%.1f\t%s\t%s\t%.0f\n", $1, $2, $3, conns / ($5 - $4), per_cpu, tracer, $7, conns
    }' "$2" "$1"
}

# Part 2: the kernel's own run statistics over one churn round: the
# exporter's programs from its /metrics, then tcplife's program (from /proc
# fdinfo) in a second round with both attached. Connections are counted by
# the exporter, warm-up included, as the program runs are.
part_bpf_cost() {
  local prog c0 c1
  churn_netns
  log ""
  log "part 2: BPF run time: a churn round with --enable-bpf-stats, then one with tcplife beside it"
  printf 'program\truns\trun_ns\tconnections\n' >"$OUT/bpfstats.tsv"
  start_exporter "$TRACER_CPU" --probes connect,accept,close --enable-bpf-stats
  scrape "$BENCH_TMP/before.prom"
  run_churn "$ROUND_SECONDS"
  scrape "$BENCH_TMP/after.prom"
  c0=$(sample "$BENCH_TMP/before.prom" "$CONN_METRIC")
  c1=$(sample "$BENCH_TMP/after.prom" "$CONN_METRIC")
  # every program the exporter loaded (tcp_state and the accept hooks this
  # kernel allows), as its /metrics names them
  for prog in $(sed -n 's/^bpfnet_bpf_program_runs_total{program="\([^"]*\)"}.*/\1/p' "$BENCH_TMP/after.prom"); do
    awk -v p="$prog" -v c="$((c1 - c0))" \
      -v r0="$(sample "$BENCH_TMP/before.prom" "bpfnet_bpf_program_runs_total{program=\"$prog\"}")" \
      -v r1="$(sample "$BENCH_TMP/after.prom" "bpfnet_bpf_program_runs_total{program=\"$prog\"}")" \
      -v s0="$(sample "$BENCH_TMP/before.prom" "bpfnet_bpf_program_run_seconds_total{program=\"$prog\"}")" \
      -v s1="$(sample "$BENCH_TMP/after.prom" "bpfnet_bpf_program_run_seconds_total{program=\"$prog\"}")" \
      'BEGIN { printf "bpfnet-exporter %s\t%d\t%.0f\t%d\n", p, r1 - r0, (s1 - s0) * 1e9, c }' >>"$OUT/bpfstats.tsv"
  done
  start_tcplife "$TRACER_CPU"
  scrape "$BENCH_TMP/before.prom"
  prog_stats "$TCPLIFE_PID" | sort >"$BENCH_TMP/tcplife.before"
  run_churn "$ROUND_SECONDS"
  prog_stats "$TCPLIFE_PID" | sort >"$BENCH_TMP/tcplife.after"
  scrape "$BENCH_TMP/after.prom"
  c0=$(sample "$BENCH_TMP/before.prom" "$CONN_METRIC")
  c1=$(sample "$BENCH_TMP/after.prom" "$CONN_METRIC")
  join "$BENCH_TMP/tcplife.before" "$BENCH_TMP/tcplife.after" | awk -v c="$((c1 - c0))" \
    '{ printf "tcplife (prog id %s)\t%d\t%.0f\t%d\n", $1, $4 - $2, $5 - $3, c }' >>"$OUT/bpfstats.tsv"
  stop_tcplife
  stop_exporter
}

# Part 2, continued: what attaching the accept tracepoints costs every
# system call of every process (outside any program's run time), from a
# getppid() loop on the workload CPU: no tracing, the exporter with all its
# probes, and with the connect probe only (no syscall tracepoints), in turns.
part_syscall_cost() {
  local rep cfg
  log "part 2: cost added to every system call (getppid loop, $SYSCALL_REPS turns)"
  printf 'turn	config	ns_per_syscall
' >"$OUT/syscall.tsv"
  for ((rep = 1; rep <= SYSCALL_REPS; rep++)); do
    for cfg in baseline exporter exporter-connect; do
      start_config "$cfg"
      sleep 0.2
      printf '%s\t%s\t%s\n' "$rep" "$cfg" \
        "$(field ns_per_syscall "$(${WORKLOAD_CPU:+taskset -c "$WORKLOAD_CPU"} "$BIN/syscall" -t 0.5)")" >>"$OUT/syscall.tsv"
      stop_config "$cfg"
    done
  done
}

# Part 3: scrape duration with ACCEPT_PORTS accept series, each from one
# accepted connection on its own listening port, in a namespace the exporter
# is filtered to; and, for comparison, before those connections.
part_scrape() {
  local ns
  log ""
  log "part 3: /metrics scrape duration with $ACCEPT_PORTS accept label sets"
  make_netns ports
  ns=$NETNS
  # unpinned: a scrape is one node thread, wherever the scheduler finds room
  start_exporter "" --probes connect,accept,close --accept-port-limit "$ACCEPT_PORTS" --netns "/run/netns/$ns"
  time_scrapes 3 >/dev/null
  time_scrapes "$SCRAPES" >"$OUT/scrape-empty.txt"
  ip netns exec "$ns" "$BIN/ports" -b 20000 -n "$ACCEPT_PORTS" >&2
  scrape "$OUT/scrape.prom"
  time_scrapes 3 >/dev/null
  time_scrapes "$SCRAPES" >"$OUT/scrape-full.txt"
  stop_exporter
  echo "$ACCEPT_PORTS" >"$OUT/accept-ports.txt"
}

# Seconds per scrape, one a line, over one kept-alive connection as a
# Prometheus server scrapes.
time_scrapes() { # count
  local args=() i
  for ((i = 0; i < $1; i++)); do args+=(-o /dev/null "http://$EXP_ADDR/metrics"); done
  curl -sf -w '%{time_total}\n' "${args[@]}" || die "a scrape failed"
}
