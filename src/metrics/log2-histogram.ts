// SPDX-License-Identifier: Apache-2.0
// Histograms kept by BPF code as log2 slots (bpf/include/histogram.h) and read
// at scrape time. Slot i counts values in (2^(i-1), 2^i]; the exposed buckets
// are a chosen range of those powers of two, so every cumulative count is exact.
import type { Registry } from 'prom-client';
import { TCP_LIFECYCLE } from '../generated/tcp-lifecycle';
import type { Labels } from './collected';
import { LabelSets, NO_LABELS, type RenderedSample } from './label-sets';
import { validateNames, type ScrapeFailures } from './validate';

/** struct hist's slots (bpf/include/histogram.h), as every object has it */
export const HIST_SLOTS = TCP_LIFECYCLE.structs.hist.fields.slots.length;

/** One labelled histogram as read from a map: slot counts and the sum, in raw units. */
export interface Log2Sample {
  labels: Labels;
  slots: readonly number[];
  sum: number;
}

export interface Log2HistogramOptions {
  name: string;
  help: string;
  labelNames: readonly string[];
  /** exposed bucket bounds are 2^minExp .. 2^maxExp raw units, then +Inf */
  minExp: number;
  maxExp: number;
  /** raw units per base unit: 1e9 for nanoseconds exposed as seconds, 1 for bytes */
  scale: number;
  collect: () => Log2Sample[];
  registry: Registry;
  failures: ScrapeFailures;
}

/** The Prometheus bucket bound (le) of slot exp, in base units. */
export function bucketBound(exp: number, scale: number): number {
  return 2 ** exp / scale;
}

/** Cumulative counts at 2^minExp..2^maxExp and the total, from log2 slots. */
export function cumulativeBuckets(slots: readonly number[], minExp: number, maxExp: number): { buckets: number[]; count: number } {
  const buckets: number[] = [];
  let running = 0;
  for (let i = 0; i < slots.length; i++) {
    running += slots[i]!;
    if (i >= minExp && i <= maxExp) buckets.push(running);
  }
  // slots below minExp fold into the first bucket, above maxExp into +Inf
  return { buckets, count: running };
}

export class Log2Histogram {
  readonly type = 'histogram';
  readonly name: string;
  readonly help: string;
  private readonly bounds: string[];
  private readonly labelSets = new LabelSets();

  constructor(private readonly opts: Log2HistogramOptions) {
    validateNames(opts.name, opts.labelNames, opts.help);
    if (opts.labelNames.includes('le')) throw new Error(`histogram ${opts.name} cannot have a label le`);
    if (!(opts.minExp >= 0 && opts.minExp <= opts.maxExp && opts.maxExp < HIST_SLOTS)) {
      throw new Error(`histogram ${opts.name}: bucket exponents must satisfy 0 <= min <= max < ${HIST_SLOTS}`);
    }
    this.name = opts.name;
    this.help = opts.help;
    this.bounds = [];
    for (let e = opts.minExp; e <= opts.maxExp; e++) this.bounds.push(String(bucketBound(e, opts.scale)));
    this.bounds.push('+Inf');
    opts.registry.registerMetric(this as never);
  }

  async get(): Promise<{ name: string; help: string; type: string; values: RenderedSample[]; aggregator: string }> {
    const values: RenderedSample[] = [];
    let samples: Log2Sample[] = [];
    try {
      samples = this.opts.collect();
    } catch (err) {
      this.opts.failures.record(this.name, err as Error);
    }
    const bucket = `${this.name}_bucket`;
    for (const s of samples) {
      const { buckets, count } = cumulativeBuckets(s.slots, this.opts.minExp, this.opts.maxExp);
      const shared = this.labelSets.intern(s.labels);
      // le last, as scrapers print it; each (labels, le) object is kept too
      [...buckets, count].forEach((n, i) =>
        values.push({ metricName: bucket, labels: NO_LABELS, sharedLabels: this.labelSets.intern({ ...s.labels, le: this.bounds[i]! }), value: n }),
      );
      values.push({ metricName: `${this.name}_sum`, labels: NO_LABELS, sharedLabels: shared, value: s.sum / this.opts.scale });
      values.push({ metricName: `${this.name}_count`, labels: NO_LABELS, sharedLabels: shared, value: count });
    }
    return { name: this.name, help: this.help, type: this.type, values, aggregator: 'sum' };
  }

  reset(): void {}
}
