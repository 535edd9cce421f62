// SPDX-License-Identifier: Apache-2.0
// Checks made when a metric is built, and the count of reads that failed at scrape.
import { Counter, type Registry } from 'prom-client';
import type { Logger } from '../log';

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

export function validateNames(name: string, labelNames: readonly string[], help: string): void {
  if (!METRIC_NAME.test(name)) throw new Error(`invalid metric name ${name}`);
  for (const l of labelNames) {
    if (!LABEL_NAME.test(l) || l.startsWith('__')) throw new Error(`invalid label name ${l} on ${name}`);
  }
  if (!help.trim()) throw new Error(`metric ${name} needs help text`);
}

/** Reads that failed while a scrape collected a metric: logged and counted. */
export class ScrapeFailures {
  private readonly counter: Counter<'metric'>;

  constructor(
    registry: Registry,
    private readonly log: Logger,
  ) {
    this.counter = new Counter({
      name: 'bpfnet_scrape_errors_total',
      help: 'Metrics that could not be read at scrape time (the log says why).',
      labelNames: ['metric'],
      registers: [registry],
    });
  }

  record(metric: string, err: Error): void {
    this.counter.inc({ metric });
    this.log.warn('cannot collect metric', { metric, err: err.message });
  }
}
