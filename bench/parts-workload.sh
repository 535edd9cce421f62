# SPDX-License-Identifier: Apache-2.0
# The workload attribution parts of bench/run.sh: what the exporter's user
# space spends under churn, attribution on and off (part 4), and how long a
# scrape takes with the series of many pods (part 5). Each writes raw data
# into $OUT for bench/report.sh. Sourced after bench/parts.sh, not run.

# Part 4. The exporter's own CPU time (user and system, from /proc/PID/stat)
# while the churn runs at each rate of CPU_RATES (connections a second;
# "max": flat out; 0: no churn), with attribution on (exporter) and off
# (exporter-noattr), scraped every SCRAPE_INTERVAL seconds as Prometheus
# would. The kernel aggregates, so user space should work per scrape, not
# per connection: the same CPU at every rate. CPU_REPS turns, the
# configurations alternating which goes first; each phase CPU_SECONDS of
# churn (after WARMUP, which is counted in the CPU time too).
part_user_cpu() {
  local rep cfg rate order=(exporter exporter-noattr) u0 s0 u1 s1 n0 n1 t0 t1 conns
  # another built checkout (exporter=DIR) side by side, as in part 2
  for cfg in "${CONFIG_LIST[@]}"; do [[ $cfg != exporter=* ]] || order+=("$cfg"); done
  churn_netns
  log ""
  log "part 4: the exporter's CPU under churn at ${CPU_RATES} conn/s, scraped every ${SCRAPE_INTERVAL} s, $CPU_REPS turns"
  printf 'rep\tconfig\ttarget\tseconds\trate\tuser_ticks\tsystem_ticks\tscrapes\n' >"$OUT/user-cpu.tsv"
  for ((rep = 1; rep <= CPU_REPS; rep++)); do
    for cfg in "${order[@]}"; do
      start_config "$cfg"
      start_scraper
      sleep 2 # the first scrapes: label sets made, code compiled
      for rate in ${CPU_RATES//,/ }; do
        read -r u0 s0 < <(cpu_user_system "$EXP_PID")
        n0=$(wc -l <"$BENCH_TMP/scrapes.log")
        t0=$EPOCHREALTIME
        case $rate in
          0) sleep "$CPU_SECONDS"; conns=0 ;;
          max) run_churn "$CPU_SECONDS"; conns=$(field rate "$CHURN") ;;
          *) run_churn "$CPU_SECONDS" -r "$rate"; conns=$(field rate "$CHURN") ;;
        esac
        t1=$EPOCHREALTIME
        read -r u1 s1 < <(cpu_user_system "$EXP_PID")
        n1=$(wc -l <"$BENCH_TMP/scrapes.log")
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$rep" "$cfg" "$rate" \
          "$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')" "$conns" $((u1 - u0)) $((s1 - s0)) $((n1 - n0)) >>"$OUT/user-cpu.tsv"
      done
      # what it serves: with attribution on, the churn's series by pod
      [ "$rep" != 1 ] || [[ $cfg == exporter=* ]] || scrape "$OUT/user-cpu-$cfg.prom"
      stop_pid "$SCRAPER_PID"
      stop_config "$cfg"
    done
    order=("${order[@]:1}" "${order[0]}")
    log "  turn $rep of $CPU_REPS done"
  done
  echo "$SCRAPE_INTERVAL" >"$OUT/scrape-interval.txt"
}

# Scrapes the exporter (EXP_ADDR) every SCRAPE_INTERVAL seconds, on the
# tracer CPU, until stopped; a line per scrape in $BENCH_TMP/scrapes.log.
start_scraper() {
  : >"$BENCH_TMP/scrapes.log"
  pinned "$TRACER_CPU" bash -c 'while :; do
      curl -sf -o /dev/null -w "%{time_total}\n" "http://$1/metrics" >>"$2" || echo failed >>"$2"
      sleep "$3"
    done' scraper "$EXP_ADDR" "$BENCH_TMP/scrapes.log" "$SCRAPE_INTERVAL"
  "${CMD[@]}" &
  SCRAPER_PID=$!
  track_pid "$SCRAPER_PID"
}

# Part 5. /metrics with the series of many pods. For each count in
# PODS_LIST, that many pods (cgroups laid out as kubelet's, with its log
# links) each connect once to each of POD_PORTS ports (bench/hop.c: one
# process moved from pod to pod; its listeners in a cgroup of their own),
# watched by two exporters at once, both filtered to the part's network
# namespace: attribution on (--max-series 20000, so that nothing is folded)
# and off. Then POD_SCRAPES timed scrapes of each over a kept-alive
# connection, in alternating blocks of 10, and each exporter's memory. The
# exporters are not pinned, as in part 3.
part_scrape_pods() {
  local n ns on off on_addr off_addr b pid flags
  make_netns pods
  ns=$NETNS
  make_bench_cgroup
  mkdir -p "$BENCH_CGROUP/servers"
  log ""
  log "part 5: /metrics with the series of $PODS_LIST pods, $POD_PORTS ports each"
  printf 'pods\tconfig\tseconds\n' >"$OUT/scrape-pods.tsv"
  printf 'pods\tconfig\trss_kib\thwm_kib\n' >"$OUT/scrape-pods-memory.tsv"
  for n in ${PODS_LIST//,/ }; do
    : >"$BENCH_TMP/pods-$n.txt"
    make_pods load "client$n" "$n" "$BENCH_TMP/pods-$n.txt"
    flags=(--kubelet-containers-dir "$CONTAINERS_DIR" --netns "/run/netns/$ns")
    start_exporter "" "${flags[@]}" --max-series 20000
    on=$EXP_PID on_addr=$EXP_ADDR
    start_exporter "" "${flags[@]}" "--labels=$NO_WORKLOAD_LABELS"
    off=$EXP_PID off_addr=$EXP_ADDR
    in_cgroup_netns "$BENCH_CGROUP/servers" "$ns" "$BIN/hop" -p 19000 -n "$POD_PORTS" -f "$BENCH_TMP/pods-$n.txt"
    "${CMD[@]}" >"$OUT/hop-$n.txt" &
    pid=$!
    track_pid "$pid"
    wait "$pid" || die "hop failed"
    untrack_pid "$pid"
    log "  $n pods: $(cat "$OUT/hop-$n.txt")"
    EXP_ADDR=$on_addr
    scrape "$BENCH_TMP/pods.prom"
    gzip -c "$BENCH_TMP/pods.prom" >"$OUT/scrape-pods-$n-exporter.prom.gz"
    EXP_ADDR=$off_addr
    scrape "$BENCH_TMP/pods.prom"
    gzip -c "$BENCH_TMP/pods.prom" >"$OUT/scrape-pods-$n-exporter-noattr.prom.gz"
    for ((b = 0; b < POD_SCRAPES; b += 10)); do
      for EXP_ADDR in "$on_addr" "$off_addr"; do
        time_scrapes 2 >/dev/null # warm-up, and a fresh connection
        time_scrapes $((POD_SCRAPES - b < 10 ? POD_SCRAPES - b : 10)) |
          awk -v n="$n" -v c="$([ "$EXP_ADDR" = "$on_addr" ] && echo exporter || echo exporter-noattr)" \
            '{ printf "%s\t%s\t%s\n", n, c, $1 }' >>"$OUT/scrape-pods.tsv"
      done
    done
    printf '%s\texporter\t%s\n%s\texporter-noattr\t%s\n' "$n" "$(memory_kib "$on" | tr ' ' '\t')" \
      "$n" "$(memory_kib "$off" | tr ' ' '\t')" >>"$OUT/scrape-pods-memory.tsv"
    EXP_PID=$on
    stop_exporter
    EXP_PID=$off
    stop_exporter
  done
}
