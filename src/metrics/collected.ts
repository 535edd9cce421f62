// SPDX-License-Identifier: Apache-2.0
// Counters and gauges whose samples are read at scrape time (from BPF maps)
// instead of being incremented by the process. Validation happens at
// construction; a failing read is logged and counted, never thrown at the scraper.
import type { Registry } from 'prom-client';
import { validateNames, type ScrapeFailures } from './validate';

export type Labels = Record<string, string>;
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

  async get(): Promise<{ name: string; help: string; type: string; values: Sample[]; aggregator: string }> {
    let values: Sample[] = [];
    try {
      values = this.collectFn();
    } catch (err) {
      this.failures.record(this.name, err as Error);
    }
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
