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

churn_table() {
  local f=$OUT/rounds.tsv c base base_cpu med lo hi cpu tracer loss paired cpuloss rounds file
  rounds=$(awk -F'\t' 'NR > 1 && $2 > r { r = $2 } END { print r }' "$f")
  col() { awk -F'\t' -v c="$1" -v k="$2" 'NR > 1 && $3 == c { print $k }' "$f"; }
  echo "### 1. Connection churn: $rounds rounds, each tracer phase between two baseline phases"
  echo
  echo "| configuration | phases | conn/s, median | min .. max | throughput loss (ratio of medians) | paired loss: median [95 % CI of the mean] | conn per workload CPU-second (loss) | tracer user space CPU |"
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
      paired="$(pct "$(median <"$file")") [$(awk '{ s += $1; q += $1 * $1; n++ }
        END { m = s / n; sd = n > 1 ? sqrt((q - n * m * m) / (n - 1)) : 0; h = 1.96 * sd / sqrt(n); printf "%.1f .. %.1f", m - h, m + h }' "$file")]"
      cpuloss=" ($(pct "$(awk -v a="$base_cpu" -v b="$cpu" 'BEGIN { print (1 - b / a) * 100 }')"))"
      tracer="$(col "$c" 6 | median) % of a core"
    fi
    printf '| %s | %d | %.0f | %.0f .. %.0f | %s | %s | %.0f%s | %s |\n' "$c" "$(col "$c" 4 | wc -l)" "$med" "$lo" "$hi" "$loss" "$paired" "$cpu" "$cpuloss" "$tracer"
  done
  awk -F'\t' 'NR > 1 && $7 != "-" && $7 + 0 < $8 + 0 { bad[$3]++ }
    END { for (c in bad) printf "\nWARNING: in %d %s phases the exporter counted fewer connects than the churn made.\n", bad[c], c }' "$f"
  echo
}

cost_table() {
  echo "### 2. Kernel cost per BPF program run (kernel bpf_stats over one churn round)"
  echo
  echo "| program | runs | ns per run | runs per connection | ns per connection |"
  echo "|---|---:|---:|---:|---:|"
  awk -F'\t' 'NR > 1 { printf "| %s | %d | %.0f | %.2f | %.0f |\n", $1, $2, $2 ? $3 / $2 : 0, $4 ? $2 / $4 : 0, $4 ? $3 / $4 : 0 }' "$OUT/bpfstats.tsv"
  echo
  # what that cost alone would take from the baseline: at r conn/s a
  # connection takes 1/r s; d more makes the rate 1/(1/r + d)
  awk -F'\t' -v r="$(base_rate)" 'NR > 1 { who = $1 ~ /^bpfnet/ ? "bpfnet-exporter" : "tcplife"; ns[who] += $3; c[who] = $4 }
    END {
      for (w in ns) if (c[w]) {
        d = ns[w] / c[w]
        printf "%s programs: %.0f ns per connection", w, d
        if (r > 0) printf "; at the baseline median of %.0f conn/s (%.1f us per connection) that alone predicts a throughput loss of %.1f %%", r, 1e6 / r, d * 1e-9 * r / (1 + d * 1e-9 * r) * 100
        print "."
      }
    }' "$OUT/bpfstats.tsv" | sort
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
  for c in baseline exporter exporter-connect; do
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
  echo "| accept label sets | series in the output | body | p50 | p99 | max |"
  echo "|---:|---:|---:|---:|---:|---:|"
  for which in empty full; do
    if [ $which = empty ]; then printf '| 0 (before the connections) | | '; else printf '| %s | %s | %s KiB ' "$accept" "$all" "$body"; fi
    printf '| %s | %s | %s |\n' "$(median <"$OUT/scrape-$which.txt" | ms)" "$(percentile 99 <"$OUT/scrape-$which.txt" | ms)" \
      "$(sort -g "$OUT/scrape-$which.txt" | tail -1 | ms)"
  done
  [ "$accept" -ge "$ports" ] || echo "WARNING: $accept accept series, expected $ports."
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
if [ -s "$OUT/warnings.txt" ]; then
  echo "Warnings:"
  echo
  sed 's/^/- /' "$OUT/warnings.txt"
  echo
fi
echo "Raw data: $OUT/"
