// SPDX-License-Identifier: Apache-2.0
// Counters and gauges whose samples are read at scrape time (from BPF maps)
// instead of being incremented by the process. Validation happens at
// construction; a failing read is logged and counted, never thrown at the scraper.
import type { Registry } from 'prom-client';
import { LabelSets, NO_LABELS, type Labels, type RenderedSample } from './label-sets';
import { validateNames, type ScrapeFailures } from './validate';

export type { Labels };
export interface Sample {
  labels: Labels;
  value: number;
}

export interface CollectedOptions {
  name: string;
  help: string;
  labelNames: readonly string[];
  collect: () => Sample[];
  registry: Registry;
  failures: ScrapeFailures;
}

class Collected {
  readonly name: string;
  readonly help: string;
  private readonly collectFn: () => Sample[];
  private readonly failures: ScrapeFailures;
  private readonly labelSets = new LabelSets();

  constructor(
    readonly type: 'counter' | 'gauge',
    opts: CollectedOptions,
  ) {
    validateNames(opts.name, opts.labelNames, opts.help);
    if (type === 'counter' && !opts.name.endsWith('_total')) {
      throw new Error(`counter ${opts.name} must end in _total`);
    }
    this.name = opts.name;
    this.help = opts.help;
    this.collectFn = opts.collect;
    this.failures = opts.failures;
    opts.registry.registerMetric(this as never);
  }

  async get(): Promise<{ name: string; help: string; type: string; values: RenderedSample[]; aggregator: string }> {
    let samples: Sample[] = [];
    try {
      samples = this.collectFn();
    } catch (err) {
      this.failures.record(this.name, err as Error);
    }
    const values = samples.map((s) => ({ labels: NO_LABELS, sharedLabels: this.labelSets.intern(s.labels), value: s.value }));
    return { name: this.name, help: this.help, type: this.type, values, aggregator: 'sum' };
  }

  reset(): void {}
}

export class CollectedCounter extends Collected {
  constructor(opts: CollectedOptions) {
    super('counter', opts);
  }
}

export class CollectedGauge extends Collected {
  constructor(opts: CollectedOptions) {
    super('gauge', opts);
  }
}
