// SPDX-License-Identifier: Apache-2.0
// Reading per-CPU BPF maps at scrape time: a value summed over CPUs, read by
// field name through its struct's layout, and one read per scrape for the
// metrics that share it.
import { sumPerCpu, sumPerCpuArray, type Layout } from '../libbpf';
import type { Labels } from './collected';
import type { Log2Sample } from './log2-histogram';

/** A per-CPU map value, summed over CPUs, with readers by field name. */
export class PerCpuValue<F extends string = string> {
  constructor(
    private readonly value: Buffer,
    private readonly stride: number,
    private readonly layout: Layout<F>,
  ) {}

  u64(field: F): number {
    return sumPerCpu(this.value, this.stride, this.layout.offset(field));
  }

  /** An array field, every element summed over CPUs. */
  array(field: F): number[] {
    return sumPerCpuArray(this.value, this.stride, this.layout.offset(field), this.layout.length(field));
  }

  hist(field: F, labels: Labels): Log2Sample {
    const base = this.layout.offset(field);
    const h = this.layout.nested(field);
    return {
      labels,
      slots: sumPerCpuArray(this.value, this.stride, base + h.offset('slots'), h.length('slots')),
      sum: sumPerCpu(this.value, this.stride, base + h.offset('sum')),
    };
  }
}

/** Memoizes a read for the rest of the current scrape (one turn of the event
 * loop), so metrics fed by one map read it once per scrape. */
export function perScrape<T>(read: () => T): () => T {
  let cached: { value: T } | undefined;
  return () => {
    if (!cached) {
      cached = { value: read() };
      setImmediate(() => (cached = undefined));
    }
    return cached.value;
  };
}
