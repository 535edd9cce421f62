// SPDX-License-Identifier: Apache-2.0
// Counters and gauges whose samples are read at scrape time (from BPF maps)
// instead of being incremented by the process. Validation happens at
// construction; a failing read is logged and counted, never thrown at the scraper.
import type { Registry } from 'prom-client';
import { formatValue, header, labelPairs, type Exposed, type Format } from './exposition';
import { validateNames, type ScrapeFailures } from './validate';

/** A sample's labels, by name. */
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

class Collected implements Exposed {
  readonly name: string;
  readonly help: string;
  private readonly labelNames: readonly string[];
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
    this.labelNames = opts.labelNames;
    this.collectFn = opts.collect;
    this.failures = opts.failures;
    opts.registry.registerMetric(this as never);
  }

  expose(format: Format): Buffer[] {
    let samples: Sample[] = [];
    try {
      samples = this.collectFn();
    } catch (err) {
      this.failures.record(this.name, err as Error);
    }
    let text = header(this.name, this.type, this.help, format);
    for (const s of samples) {
      const pairs = labelPairs(this.labelNames, s.labels);
      text += `${this.name}${pairs ? `{${pairs}}` : ''} ${formatValue(s.value)}\n`;
    }
    return [Buffer.from(text)];
  }
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
