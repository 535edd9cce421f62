// SPDX-License-Identifier: Apache-2.0
// Metrics about the exporter itself: which probes run, its build, the
// kernel's statistics about its BPF programs, and prom-client's standard
// process and Node.js metrics (process_*, nodejs_*: unprefixed, as every
// Prometheus client library names them, so the usual dashboards and alerts
// about a process's CPU, memory and file descriptors apply as they are).
import { collectDefaultMetrics, Gauge, type Registry } from 'prom-client';
import type { BuildInfo } from '../build-info';
import type { BpfProgram } from '../libbpf';
import { CollectedCounter } from './collected';
import type { ScrapeFailures } from './validate';

export function registerExporterMetrics(opts: {
  registry: Registry;
  failures: ScrapeFailures;
  build: BuildInfo;
  /** each probe's status: whether it runs */
  status: () => ReadonlyMap<string, { up: boolean }>;
  programs: () => BpfProgram[];
}): void {
  const { registry, failures, build } = opts;
  new Gauge({
    name: 'bpfnet_build_info',
    help: 'Always 1; the labels say which bpfnet-exporter is running (version, the git commit it was built from) and on what (Node.js, the system libbpf, the kernel).',
    labelNames: Object.keys(build),
    registers: [registry],
  }).set({ ...build }, 1);

  new Gauge({
    name: 'bpfnet_probe_up',
    help: '1 if the probe is loaded and attached, 0 if it could not be (the log says why).',
    labelNames: ['probe'],
    registers: [registry],
    collect() {
      this.reset();
      for (const [probe, s] of opts.status()) this.set({ probe }, s.up ? 1 : 0);
    },
  });

  const perProgram = (name: string, help: string, value: (p: ReturnType<BpfProgram['info']>) => number) =>
    new CollectedCounter({
      name,
      help,
      labelNames: ['program'],
      registry,
      failures,
      collect: () => opts.programs().map((p) => ({ labels: { program: p.name }, value: value(p.info()) })),
    });
  const statsOff = 'Counted only while BPF statistics are on: sysctl kernel.bpf_stats_enabled=1, or run with --enable-bpf-stats.';
  perProgram('bpfnet_bpf_program_run_seconds_total', `Time the kernel spent running each BPF program. ${statsOff}`, (i) => i.runTimeNs / 1e9);
  perProgram('bpfnet_bpf_program_runs_total', `Times each BPF program ran. ${statsOff}`, (i) => i.runCount);
  perProgram(
    'bpfnet_bpf_program_recursion_misses_total',
    'Events a BPF program missed because it was already running on that CPU (an interrupt hit it); always counted.',
    (i) => i.recursionMisses,
  );

  // the event loop's delay sampled every 100 ms, not prom-client's 10 ms: a
  // timer firing 100 times a second added about 0.6 points of a core to an
  // idle exporter (BENCHMARKS.md, part 4); each delay is still measured to
  // the nanosecond
  collectDefaultMetrics({ register: registry, eventLoopMonitoringPrecision: EVENT_LOOP_SAMPLE_MS });
  // gauges named like counters (promtool: non-counter metrics should not
  // have "_total" suffix), each the sum of the by-type gauge beside it
  for (const name of SUMS_NAMED_AS_COUNTERS) registry.removeSingleMetric(name);
}

const EVENT_LOOP_SAMPLE_MS = 100;

/** prom-client's default metrics that are left out. */
export const SUMS_NAMED_AS_COUNTERS = ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total'];
