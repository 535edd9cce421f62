# SPDX-License-Identifier: Apache-2.0
# The three measurements of bench/run.sh. Each writes raw data into $OUT for
# bench/report.sh and logs progress on stderr. Sourced, not run.

# the metric the churn's connections are checked against, summed over its
# workload labels
CONN_METRIC=bpfnet_tcp_connects_total
CONN_LABELS='family="ipv4",result="established"'
# --labels for attribution off: the kernel then keys by family and role only
NO_WORKLOAD_LABELS=-namespace,-pod,-container,-cgroup,-peer_port,-peer_namespace,-peer_pod

# The churn namespace, made once: loopback up, a bounded TIME_WAIT
# population (every round starts from the same table size rather than the
# previous rounds' leftovers) and a wide port range (clients never run out).
# And the churn's pods: CHURN_PODS cgroups laid out as kubelet's, one churn
# process in each, so that with attribution on the kernel's maps hold a key
# per pod, as on a node with a few busy pods.
churn_netns() {
  [ -n "${CHURN_NS:-}" ] && return 0
  make_netns churn
  CHURN_NS=$NETNS
  ip netns exec "$CHURN_NS" sysctl -qw net.ipv4.ip_local_port_range="1024 65535" net.ipv4.tcp_max_tw_buckets=16384
  make_pods bench churn "$CHURN_PODS" "$BENCH_TMP/churn-pods.txt"
  CHURN_GROUPS=$(paste -sd, "$BENCH_TMP/churn-pods.txt")
}

# Sets CMD to the churn (bench/churn.c) in its namespace and pods, on the
# workload CPU. (nsenter: ip netns exec would hide the cgroups.)
churn_cmd() { # churn flags...
  CMD=(nsenter "--net=/run/netns/$CHURN_NS")
  [ -z "${WORKLOAD_CPU:-}" ] || CMD+=(taskset -c "$WORKLOAD_CPU")
  CMD+=("$BIN/churn" -c "$CLIENTS" -n "$SERVER_PORTS" -b 1024 -g "$CHURN_GROUPS" "$@")
}

# One churn run on the workload CPU; its result line in CHURN.
run_churn() { # seconds [churn flags...]
  churn_cmd -t "$1" -w "$WARMUP" "${@:2}"
  "${CMD[@]}" >"$BENCH_TMP/churn.out" &
  local pid=$!
  track_pid "$pid"
  wait "$pid" || die "churn failed"
  untrack_pid "$pid"
  CHURN=$(cat "$BENCH_TMP/churn.out")
}

# Starts what a configuration runs beside the churn, with more exporter
# flags if given; TRACER_PID is its process. This checkout's exporter finds
# the names of the benchmark's pods in CONTAINERS_DIR.
start_config() { # config [exporter flags...]
  local cfg=$1 own=(--probes connect,accept,close --kubelet-containers-dir "$CONTAINERS_DIR")
  shift
  TRACER_PID=
  case $cfg in
    baseline) ;;
    exporter) start_exporter "$TRACER_CPU" "${own[@]}" "$@" ;;
    exporter-noattr) start_exporter "$TRACER_CPU" "${own[@]}" "--labels=$NO_WORKLOAD_LABELS" "$@" ;;
    exporter-connect) start_exporter "$TRACER_CPU" "${own[@]/connect,accept,close/connect}" "$@" ;;
    exporter-netns) start_exporter "$TRACER_CPU" "${own[@]}" --netns "/run/netns/$CHURN_NS" "$@" ;;
    exporter-sidecar) start_exporter "$TRACER_CPU" "${own[@]}" --sidecar-comm bench-sidecar "$@" ;;
    exporter=*) EXPORTER_ROOT=${cfg#exporter=} start_exporter "$TRACER_CPU" --probes connect,accept,close "$@" ;;
    exporter-sidecar=*) EXPORTER_ROOT=${cfg#exporter-sidecar=} start_exporter "$TRACER_CPU" --probes connect,accept,close \
      --sidecar-comm bench-sidecar "$@" ;;
    tcplife) start_tcplife "$TRACER_CPU"; TRACER_PID=$TCPLIFE_PID ;;
  esac
  [[ $cfg == exporter* ]] && TRACER_PID=$EXP_PID
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
  local r t i=0 churn_pid order
  churn_netns
  log ""
  log "part 1: churn, $ROUNDS rounds of $CONFIGS; programs of others on inet_sock_set_state: $(foreign_tracers)"
  churn_cmd -i 100
  "${CMD[@]}" >"$OUT/samples.txt" &
  churn_pid=$!
  track_pid "$churn_pid"
  sleep "$WARMUP"
  printf 'phase\tround\tconfig\tstart\tend\ttracer_ticks\tcounted\n' >"$OUT/phases.tsv"
  for ((r = 1; r <= ROUNDS; r++)); do
    # every other round in reverse order: no tracer always follows another
    order=("${TRACERS[@]}")
    ((r % 2)) || mapfile -t order < <(printf '%s\n' "${TRACERS[@]}" | tac)
    for t in "${order[@]}"; do
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
    counted=$(sum_samples "$BENCH_TMP/phase.prom" "$CONN_METRIC" "$CONN_LABELS")
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

# Part 2: the kernel's own run statistics (--enable-bpf-stats) over churn
# rounds of BPF_ROUND_SECONDS: the exporter's programs from its /metrics, in
# each exporter configuration listed (exporter if none), in alternating
# rounds; then, if two or more, BPF_ROUNDS rounds with the first two
# attached at once ("side by side", started in alternating order), where
# every connection runs both programs at the same moment, so that the
# host's changes of speed, which move run times by a third from round to
# round, fall on both alike; then tcplife's program (from /proc fdinfo) in
# a round beside an exporter, if tcplife is listed. Connections are counted
# by an exporter, warm-up included, as the program runs are; the churn's
# connections per CPU-second (bench/churn.c) turn run time per connection
# into a share of the workload's CPU.
part_bpf_cost() {
  local r cfg order=() side
  churn_netns
  for cfg in "${CONFIG_LIST[@]}"; do [[ $cfg != exporter* ]] || order+=("$cfg"); done
  [ ${#order[@]} -gt 0 ] || order=(exporter)
  side=("${order[@]:0:2}")
  log ""
  log "part 2: BPF run time: $BPF_ROUNDS churn rounds of ${order[*]} with --enable-bpf-stats$([ ${#side[@]} = 1 ] || echo ", then of ${side[*]} side by side")$([[ ,$CONFIGS, != *,tcplife,* ]] || echo ', then one with tcplife')"
  printf 'round\tconfig\tprogram\truns\trun_ns\tconnections\tseconds\tper_cpu_second\n' >"$OUT/bpfstats.tsv"
  for ((r = 1; r <= BPF_ROUNDS; r++)); do
    for cfg in "${order[@]}"; do
      start_config "$cfg" --enable-bpf-stats
      stats_round "$r" "$cfg" "$EXP_ADDR"
      stop_config "$cfg"
    done
    order=("${order[@]:1}" "${order[0]}")
  done
  if [ ${#side[@]} = 2 ]; then
    printf '%s\t%s\n' "${side[@]}" >"$OUT/side-by-side.txt"
    for ((r = 1; r <= BPF_ROUNDS; r++)); do
      local addr=() pid=()
      for cfg in "${side[@]}"; do
        start_config "$cfg" --enable-bpf-stats
        addr+=("$EXP_ADDR") pid+=("$EXP_PID")
      done
      stats_round "$r" "side:${side[0]}" "${addr[0]}" "side:${side[1]}" "${addr[1]}"
      for EXP_PID in "${pid[@]}"; do stop_exporter; done
      side=("${side[1]}" "${side[0]}")
    done
  fi
  [[ ,$CONFIGS, == *,tcplife,* ]] || return 0
  start_config exporter --enable-bpf-stats
  start_tcplife "$TRACER_CPU"
  prog_stats "$TCPLIFE_PID" | sort >"$BENCH_TMP/tcplife.before"
  stats_round 1 tcplife "$EXP_ADDR"
  prog_stats "$TCPLIFE_PID" | sort >"$BENCH_TMP/tcplife.after"
  join "$BENCH_TMP/tcplife.before" "$BENCH_TMP/tcplife.after" | awk -v c="$STATS_CONNS" -v s="$STATS_SECONDS" -v p="$(field per_cpu_second "$CHURN")" \
    '{ printf "1\ttcplife\ttcplife (prog id %s)\t%d\t%.0f\t%d\t%s\t%s\n", $1, $4 - $2, $5 - $3, c, s, p }' >>"$OUT/bpfstats.tsv"
  stop_tcplife
  stop_exporter
}

# One statistics round beside running exporters (config, address, for
# each): their programs' runs and run time, and the connections the first
# counted (STATS_CONNS) in STATS_SECONDS. The tcplife round records its
# program itself.
stats_round() { # round config address [config address]
  local round=$1 prog t0 t1 i n cfg=() addr=()
  shift
  while [ $# -gt 0 ]; do cfg+=("$1") addr+=("$2"); shift 2; done
  n=${#cfg[@]}
  for ((i = 0; i < n; i++)); do EXP_ADDR=${addr[i]} scrape "$BENCH_TMP/before-$i.prom"; done
  t0=$EPOCHREALTIME
  run_churn "$BPF_ROUND_SECONDS"
  t1=$EPOCHREALTIME
  for ((i = 0; i < n; i++)); do EXP_ADDR=${addr[i]} scrape "$BENCH_TMP/after-$i.prom"; done
  STATS_CONNS=$(awk -v x="$(sum_samples "$BENCH_TMP/after-0.prom" "$CONN_METRIC" "$CONN_LABELS")" \
    -v y="$(sum_samples "$BENCH_TMP/before-0.prom" "$CONN_METRIC" "$CONN_LABELS")" 'BEGIN { print x - y }')
  STATS_SECONDS=$(awk -v x="$t0" -v y="$t1" 'BEGIN { printf "%.3f\n", y - x }')
  [ "${cfg[0]}" != tcplife ] || return 0
  for ((i = 0; i < n; i++)); do
    local b=$BENCH_TMP/before-$i.prom a=$BENCH_TMP/after-$i.prom
    # every program the exporter loaded (tcp_state and the accept hooks this
    # kernel allows), as its /metrics names them
    for prog in $(sed -n 's/^bpfnet_bpf_program_runs_total{program="\([^"]*\)"}.*/\1/p' "$a"); do
      awk -v r="$round" -v cfg="${cfg[i]}" -v p="$prog" -v c="$STATS_CONNS" -v s="$STATS_SECONDS" -v pc="$(field per_cpu_second "$CHURN")" \
        -v r0="$(sample "$b" "bpfnet_bpf_program_runs_total{program=\"$prog\"}")" \
        -v r1="$(sample "$a" "bpfnet_bpf_program_runs_total{program=\"$prog\"}")" \
        -v s0="$(sample "$b" "bpfnet_bpf_program_run_seconds_total{program=\"$prog\"}")" \
        -v s1="$(sample "$a" "bpfnet_bpf_program_run_seconds_total{program=\"$prog\"}")" \
        'BEGIN { printf "%s\t%s\tbpfnet-exporter %s\t%d\t%.0f\t%d\t%s\t%s\n", r, cfg, p, r1 - r0, (s1 - s0) * 1e9, c, s, pc }' >>"$OUT/bpfstats.tsv"
    done
  done
}

# Part 2, continued: what attaching the accept tracepoints costs every
# system call of every process (outside any program's run time), from a
# getppid() loop on the workload CPU: no tracing, the exporter with all its
# probes, and with the connect probe only (no syscall tracepoints), in turns;
# and timing a sidecar (the getsockopt() tracepoints too) when
# exporter-sidecar is among the configurations.
part_syscall_cost() {
  local rep cfg cfgs=(baseline exporter exporter-connect)
  [[ ,$CONFIGS, != *,exporter-sidecar,* ]] || cfgs+=(exporter-sidecar)
  log "part 2: cost added to every system call (getppid loop, $SYSCALL_REPS turns)"
  printf 'turn	config	ns_per_syscall
' >"$OUT/syscall.tsv"
  for ((rep = 1; rep <= SYSCALL_REPS; rep++)); do
    for cfg in "${cfgs[@]}"; do
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
