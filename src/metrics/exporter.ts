// SPDX-License-Identifier: Apache-2.0
// Metrics about the exporter itself: which probes run, its version, and the
// kernel's statistics about its BPF programs.
import { Gauge, type Registry } from 'prom-client';
import type { BpfProgram } from '../libbpf';
import { CollectedCounter } from './collected';
import type { ScrapeFailures } from './validate';

export function registerExporterMetrics(opts: {
  registry: Registry;
  failures: ScrapeFailures;
  version: string;
  /** each probe's status: whether it runs */
  status: () => ReadonlyMap<string, { up: boolean }>;
  programs: () => BpfProgram[];
}): void {
  const { registry, failures } = opts;
  new Gauge({
    name: 'bpfnet_build_info',
    help: 'Always 1; the version label says which bpfnet-exporter is running.',
    labelNames: ['version'],
    registers: [registry],
  }).set({ version: opts.version }, 1);

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
}
