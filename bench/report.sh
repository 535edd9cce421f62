#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Prints the results table (Markdown) of one benchmark run from its raw data:
#   bash bench/report.sh build/bench/<time>
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
OUT=${1:?usage: bash bench/report.sh build/bench/<time>}

base_rate() {
  if [ -s "$OUT/rounds.tsv" ]; then awk -F'\t' 'NR > 1 && $3 == "baseline" { print $4 }' "$OUT/rounds.tsv" | median; else echo 0; fi
}
pct() { awk -v x="$1" 'BEGIN { printf "%.1f %%", x }'; }
ms() { awk '{ printf "%.1f ms", $1 * 1000 }'; }

# "LOW .. HIGH": a 95 % confidence interval of the median of the numbers on
# stdin, from their order statistics (distribution-free: one stalled phase
# moves it by one rank, not by its size); n/a for fewer than 6
ci95_median() { # [decimals]
  sort -g | awk -v d="${1:-1}" '{ v[NR] = $1 }
    END {
      n = NR; if (n < 6) { printf "n/a"; exit }
      # the largest k with P(Binomial(n, 1/2) < k) <= 2.5 %
      p = exp(-n * log(2)); cdf = p; k = 1
      for (i = 1; i <= n; i++) { p = p * (n - i + 1) / i; if (cdf + p > 0.025) break; cdf += p; k = i + 1 }
      f = "%." d "f .. %." d "f"
      printf f, v[k], v[n + 1 - k]
    }'
}

# "LOW .. HIGH": the 95 % confidence interval of the mean of the numbers on
# stdin (Student's t, for the few rounds of --quick too)
ci95() { # [decimals]
  awk -v d="${1:-1}" '{ s += $1; q += $1 * $1; n++ }
    END {
      split("12.71 4.30 3.18 2.78 2.57 2.45 2.36 2.31 2.26 2.23 2.20 2.18 2.16 2.14 2.13 2.12 2.11 2.10 2.09 2.09 2.08 2.07 2.07 2.06 2.06 2.06 2.05 2.05 2.05 2.04", t, " ")
      if (n < 2) { printf "n/a"; exit }
      f = "%." d "f .. %." d "f"
      m = s / n; sd = sqrt((q - n * m * m) / (n - 1)); df = n - 1
      h = (df <= 30 ? t[df] : 1.96 + 2.5 / df) * sd / sqrt(n)
      printf f, m - h, m + h
    }'
}

churn_table() {
  local f=$OUT/rounds.tsv c base base_cpu med lo hi cpu tracer loss paired cpuloss rounds file
  rounds=$(awk -F'\t' 'NR > 1 && $2 > r { r = $2 } END { print r }' "$f")
  col() { awk -F'\t' -v c="$1" -v k="$2" 'NR > 1 && $3 == c { print $k }' "$f"; }
  echo "### 1. Connection churn: $rounds rounds, each tracer phase between two baseline phases"
  echo
  echo "| configuration | phases | conn/s, median | min .. max | throughput loss (ratio of medians) | paired loss: median [95 % CI of the median] | conn per workload CPU-second (loss) | tracer user space CPU |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|"
  base=$(col baseline 4 | median)
  base_cpu=$(col baseline 5 | median)
  for c in $(awk -F'\t' 'NR > 1 && !seen[$3]++ { print $3 }' "$f"); do
    med=$(col "$c" 4 | median)
    lo=$(col "$c" 4 | sort -g | head -1)
    hi=$(col "$c" 4 | sort -g | tail -1)
    cpu=$(col "$c" 5 | median)
    if [ "$c" = baseline ]; then
      loss=- paired=- cpuloss="" tracer=-
    else
      loss=$(pct "$(awk -v a="$base" -v b="$med" 'BEGIN { print (1 - b / a) * 100 }')")
      # each tracer phase against the mean of the baseline phases on either
      # side of it, seconds away: the machine's drifts mostly cancel
      file=$OUT/paired-$(tr -c 'A-Za-z0-9\n-' _ <<<"$c").txt
      awk -F'\t' -v c="$c" 'NR > 1 { cfg[$1] = $3; rate[$1] = $4 }
        END { for (i in cfg) if (cfg[i] == c && cfg[i - 1] == "baseline" && cfg[i + 1] == "baseline")
                print (1 - 2 * rate[i] / (rate[i - 1] + rate[i + 1])) * 100 }' "$f" >"$file"
      paired="$(pct "$(median <"$file")") [$(ci95_median <"$file")]"
      cpuloss=" ($(pct "$(awk -v a="$base_cpu" -v b="$cpu" 'BEGIN { print (1 - b / a) * 100 }')"))"
      tracer="$(col "$c" 6 | median) % of a core"
    fi
    printf '| %s | %d | %.0f | %.0f .. %.0f | %s | %s | %.0f%s | %s |\n' "$c" "$(col "$c" 4 | wc -l)" "$med" "$lo" "$hi" "$loss" "$paired" "$cpu" "$cpuloss" "$tracer"
  done
  awk -F'\t' 'NR > 1 && $7 != "-" && $7 + 0 < $8 + 0 { bad[$3]++ }
    END { for (c in bad) printf "\nWARNING: in %d %s phases the exporter counted fewer connects than the churn made.\n", bad[c], c }' "$f"
  echo
  if grep -q $'\texporter-noattr\t' "$f" && grep -q $'\texporter\t' "$f"; then attribution_diff "$f"; fi
}

# Attribution on against off: in each round, the paired loss of the
# exporter phase less that of the exporter-noattr phase (each against the
# baselines beside it), in points.
attribution_diff() { # rounds.tsv
  local file=$OUT/paired-attribution.txt
  awk -F'\t' 'NR > 1 { cfg[$1] = $3; round[$1] = $2; rate[$1] = $4 }
    END {
      for (i in cfg) if ((cfg[i] == "exporter" || cfg[i] == "exporter-noattr") && cfg[i - 1] == "baseline" && cfg[i + 1] == "baseline")
        loss[cfg[i], round[i]] = (1 - 2 * rate[i] / (rate[i - 1] + rate[i + 1])) * 100
      for (k in loss) { split(k, p, SUBSEP); if (p[1] == "exporter" && (("exporter-noattr", p[2]) in loss)) print loss[k] - loss["exporter-noattr", p[2]] }
    }' "$1" >"$file"
  echo "Attribution on (exporter) against off (exporter-noattr), paired loss of the one less the other's in the same round, over $(wc -l <"$file") rounds: median $(median <"$file" | awk '{ printf "%+.1f", $1 }') points, 95 % CI of the median [$(ci95_median <"$file")]; mean $(awk '{ s += $1 } END { printf "%+.1f", s / NR }' "$file") [$(ci95 <"$file")]."
  echo
}

cost_table() {
  local f=$OUT/bpfstats.tsv
  echo "### 2. Kernel cost per BPF program run (kernel bpf_stats over churn rounds)"
  echo
  echo "Each exporter configuration alone, summed over $(awk -F'\t' 'NR > 1 && $2 == "exporter" { r[$1] } END { print length(r) }' "$f") rounds. Share of the workload CPU: run time per connection times the churn's connections per CPU-second, the mean over rounds."
  echo
  echo "| configuration | program | runs | ns per run | runs per connection | ns per connection | share of the workload CPU |"
  echo "|---|---|---:|---:|---:|---:|---:|"
  awk -F'\t' 'NR > 1 && $2 !~ /^side:/ {
      k = $2 SUBSEP $3; if (!(k in runs)) order[++n] = k
      runs[k] += $4; ns[k] += $5; share[k] += $6 ? $5 / $6 * $8 / 1e7 : 0; rounds[k]++
      if (!(($2, $1) in seen)) { seen[$2, $1]; conns[$2] += $6 }
    }
    END {
      for (i = 1; i <= n; i++) {
        split(order[i], p, SUBSEP); c = p[1]; k = order[i]
        printf "| %s | %s | %d | %.0f | %.2f | %.0f | %.2f %% |\n", c, p[2], runs[k], runs[k] ? ns[k] / runs[k] : 0,
          conns[c] ? runs[k] / conns[c] : 0, conns[c] ? ns[k] / conns[c] : 0, share[k] / rounds[k]
      }
    }' "$f"
  echo
  awk -F'\t' 'NR > 1 && $2 !~ /^side:/ { ns[$2] += $5; share[$2] += $6 ? $5 / $6 * $8 / 1e7 : 0
      if (!(($2, $1) in seen)) { seen[$2, $1]; conns[$2] += $6; rounds[$2]++ } }
    END { for (c in ns) if (conns[c]) printf "%s: %.0f ns per connection in all, %.2f %% of the workload CPU.\n", c, ns[c] / conns[c], share[c] / rounds[c] }' "$f" | sort
  echo
  [ -s "$OUT/side-by-side.txt" ] || return 0
  # the first two exporter configurations at once: per round, the first's
  # ns per connection (all programs) less the second's
  local pc one two
  read -r one two <"$OUT/side-by-side.txt"
  awk -F'\t' -v one="side:$one" -v two="side:$two" 'NR > 1 && $2 ~ /^side:/ { ns[$2, $1] += $5; conns[$2, $1] = $6 }
    END { for (k in ns) { split(k, p, SUBSEP); if (p[1] == one && ((two, p[2]) in ns))
      print ns[k] / conns[k] - ns[two, p[2]] / conns[two, p[2]] } }' "$f" >"$OUT/bpf-side-by-side.txt"
  pc=$(awk -F'\t' -v c="$two" 'NR > 1 && $2 == c && !seen[$1]++ { s += $8; n++ } END { if (n) print s / n; else print 0 }' "$f")
  echo "$one and $two attached at once, $(wc -l <"$OUT/bpf-side-by-side.txt") rounds (every connection runs both programs at the same moment, so the host's drift falls on both alike):"
  echo
  echo "| program | ns per run, $one | ns per run, $two | ns per connection, $one less $two |"
  echo "|---|---:|---:|---:|"
  awk -F'\t' -v on="side:$one" -v off="side:$two" 'NR > 1 && $2 ~ /^side:/ { k = $3; if (!(k in seen)) { seen[k]; order[++n] = k }
      runs[$2, k] += $4; ns[$2, k] += $5; if (!(($2, $1) in cs)) { cs[$2, $1]; conns[$2] += $6 } }
    END { for (i = 1; i <= n; i++) { k = order[i]
      printf "| %s | %.0f | %.0f | %+.0f |\n", k, runs[on, k] ? ns[on, k] / runs[on, k] : 0, runs[off, k] ? ns[off, k] / runs[off, k] : 0,
        ns[on, k] / conns[on] - ns[off, k] / conns[off] } }' "$f"
  echo
  echo "$one less $two, all programs: $(median <"$OUT/bpf-side-by-side.txt" | awk '{ printf "%+.0f", $1 }') ns per connection (median of the rounds; 95 % CI of the mean [$(ci95 0 <"$OUT/bpf-side-by-side.txt")]); at $(awk -v x="$pc" 'BEGIN { printf "%.0f", x }') connections per workload CPU-second ($two alone, above) that is $(awk -v x="$pc" '{ printf "%+.2f", $1 * x / 1e7 }' < <(median <"$OUT/bpf-side-by-side.txt")) points of the workload CPU [$(awk -v x="$pc" '{ print $1 * x / 1e7 }' "$OUT/bpf-side-by-side.txt" | ci95 2)]."
  echo
}

syscall_table() {
  local f=$OUT/syscall.tsv c base med
  col() { awk -F'\t' -v c="$1" 'NR > 1 && $2 == c { print $3 }' "$f"; }
  base=$(col baseline | median)
  echo "Every system call of every process, while the exporter runs (getppid() loop on the workload CPU, median of $(col baseline | wc -l) turns of 0.5 s):"
  echo
  echo "| configuration | ns per getppid() | added |"
  echo "|---|---:|---:|"
  for c in $(awk -F'\t' 'NR > 1 && !seen[$2]++ { print $2 }' "$f"); do
    med=$(col "$c" | median)
    printf '| %s | %.0f | %s |\n' "$c" "$med" "$([ $c = baseline ] && echo - || awk -v a="$base" -v b="$med" 'BEGIN { printf "%+.0f ns (%+.0f %%)", b - a, (b / a - 1) * 100 }')"
  done
  echo
}

scrape_table() {
  local f=$OUT/scrape.prom ports accept all body
  ports=$(cat "$OUT/accept-ports.txt")
  accept=$(grep -c '^bpfnet_tcp_accepts_total{' "$f" || true)
  all=$(grep -c '^[a-z]' "$f" || true)
  body=$(($(wc -c <"$f") / 1024))
  echo "### 3. /metrics scrape duration, $(wc -l <"$OUT/scrape-full.txt") scrapes over one kept-alive connection"
  echo
  echo "| accept label sets | connect label sets | series in the output | body | p50 | p99 | max |"
  echo "|---:|---:|---:|---:|---:|---:|---:|"
  for which in empty full; do
    if [ $which = empty ]; then printf '| 0 (before the connections) | | | '; else printf '| %s | %s | %s | %s KiB ' "$accept" "$(grep -c '^bpfnet_tcp_connect_duration_seconds_count{' "$f" || true)" "$all" "$body"; fi
    printf '| %s | %s | %s |\n' "$(median <"$OUT/scrape-$which.txt" | ms)" "$(percentile 99 <"$OUT/scrape-$which.txt" | ms)" \
      "$(sort -g "$OUT/scrape-$which.txt" | tail -1 | ms)"
  done
  [ "$accept" -ge "$ports" ] || echo "WARNING: $accept accept series, expected $ports."
  echo
}

user_cpu_table() {
  local f=$OUT/user-cpu.tsv
  echo "### 4. The exporter's CPU under churn, scraped every $(cat "$OUT/scrape-interval.txt") s"
  echo
  echo "User and system time of the exporter's process (/proc/PID/stat, $(getconf CLK_TCK) ticks a second) over each phase, as a share of one core; medians over $(awk -F'\t' 'NR > 1 { if ($1 > r) r = $1 } END { print r }' "$f") turns."
  echo
  echo "| configuration | churn target | conn/s | user | system | user + system | CPU ms per scrape |"
  echo "|---|---|---:|---:|---:|---:|---:|"
  awk -F'\t' -v hz="$(getconf CLK_TCK)" 'NR > 1 { k = $2 SUBSEP $3; if (!(k in n)) order[++m] = k; n[k]++
      rate[k, n[k]] = $5; u[k, n[k]] = $6 / hz / $4 * 100; sy[k, n[k]] = $7 / hz / $4 * 100
      ms[k, n[k]] = $8 ? ($6 + $7) / hz * 1000 / $8 : 0 }
    function med(a, k, c,   i, j, v, t) { for (i = 1; i <= c; i++) v[i] = a[k, i]
      for (i = 2; i <= c; i++) for (j = i; j > 1 && v[j - 1] > v[j]; j--) { t = v[j]; v[j] = v[j - 1]; v[j - 1] = t }
      return c % 2 ? v[(c + 1) / 2] : (v[c / 2] + v[c / 2 + 1]) / 2 }
    END { for (i = 1; i <= m; i++) { k = order[i]; split(k, p, SUBSEP); c = n[k]; r = med(rate, k, c); tot = med(u, k, c) + med(sy, k, c)
      printf "| %s | %s | %.0f | %.1f %% | %.1f %% | %.1f %% | %.1f |\n", p[1], (p[2] == "max" ? "flat out" : p[2] == 0 ? "none" : p[2] " conn/s"),
        r, med(u, k, c), med(sy, k, c), tot, med(ms, k, c) } }' "$f" |
    sort -t'|' -k2,2 -s
  echo
  # a least-squares line through every phase of a configuration: CPU share
  # against connections a second
  awk -F'\t' -v hz="$(getconf CLK_TCK)" 'NR > 1 { c = $2; x = $5; y = ($6 + $7) / hz / $4 * 100
      n[c]++; sx[c] += x; sy[c] += y; sxx[c] += x * x; sxy[c] += x * y }
    END { for (c in n) { d = n[c] * sxx[c] - sx[c] * sx[c]; if (d <= 0) continue
      b = (n[c] * sxy[c] - sx[c] * sy[c]) / d
      printf "%s: %+.2f points of a core per 10,000 conn/s (least squares over its %d phases; intercept %.1f %%).\n", c, b * 1e4, n[c], (sy[c] - b * sx[c]) / n[c] } }' "$f" | sort
  echo
}

scrape_pods_table() {
  local f=$OUT/scrape-pods.tsv n c prom
  echo "### 5. /metrics with the series of many pods, $(awk -F'\t' 'NR > 1 { n[$1, $2]++ } END { for (k in n) { print n[k]; exit } }' "$f") scrapes of each exporter over kept-alive connections"
  echo
  echo "connects_total with pods: series of bpfnet_tcp_connects_total with a pod label (4 a connect label set: one per result); TCP series: every bpfnet_tcp_* sample, histogram buckets included (what Prometheus stores as series). Memory: the exporter's resident set after the scrapes, and its peak (VmHWM)."
  echo
  echo "| pods | configuration | connects_total with pods | TCP series | all series | body | p50 | p95 | max | RSS after | peak RSS |"
  echo "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
  for n in $(awk -F'\t' 'NR > 1 && !seen[$1]++ { print $1 }' "$f"); do
    for c in exporter exporter-noattr; do
      prom=$OUT/scrape-pods-$n-$c.prom.gz
      col() { awk -F'\t' -v n="$n" -v c="$c" 'NR > 1 && $1 == n && $2 == c { print $3 }' "$f"; }
      printf '| %s | %s | %s | %s | %s | %s KiB ' "$n" "$c" "$(zcat "$prom" | grep -c '^bpfnet_tcp_connects_total{.*pod="[^"]' || true)" \
        "$(zcat "$prom" | grep -c '^bpfnet_tcp_' || true)" "$(zcat "$prom" | grep -c '^[a-z]' || true)" "$(($(zcat "$prom" | wc -c) / 1024))"
      printf '| %s | %s | %s | %s |\n' "$(col | median | ms)" "$(col | percentile 95 | ms)" "$(col | sort -g | tail -1 | ms)" \
        "$(awk -F'\t' -v n="$n" -v c="$c" 'NR > 1 && $1 == n && $2 == c { printf "%.0f MiB | %.0f MiB", $3 / 1024, $4 / 1024 }' "$OUT/scrape-pods-memory.tsv")"
    done
  done
  echo
}

echo "## Results"
echo
sed 's/^/    /' "$OUT/machine.txt"
echo
if [ -s "$OUT/rounds.tsv" ]; then churn_table; fi
if [ -s "$OUT/bpfstats.tsv" ]; then cost_table; fi
if [ -s "$OUT/syscall.tsv" ]; then syscall_table; fi
if [ -s "$OUT/scrape-full.txt" ]; then scrape_table; fi
if [ -s "$OUT/user-cpu.tsv" ]; then user_cpu_table; fi
if [ -s "$OUT/scrape-pods.tsv" ]; then scrape_pods_table; fi
if [ -s "$OUT/warnings.txt" ]; then
  echo "Warnings:"
  echo
  sed 's/^/- /' "$OUT/warnings.txt"
  echo
fi
echo "Raw data: $OUT/"
