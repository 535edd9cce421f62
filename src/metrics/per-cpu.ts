// SPDX-License-Identifier: Apache-2.0
// Reading per-CPU BPF maps at scrape time: a value summed over CPUs, read by
// field name through its struct's layout; every index of a per-CPU array;
// and one read per scrape for the metrics that share it.
import { sumPerCpu, sumPerCpuArray, type BpfMap, type Layout } from '../libbpf';
import type { Labels } from './collected';
import { HIST_SLOTS, type Log2Sample } from './log2-histogram';

/** A per-CPU map value, summed over CPUs, with readers by field name. */
export class PerCpuValue {
  constructor(
    private readonly value: Buffer,
    private readonly stride: number,
    private readonly layout: Layout,
  ) {}

  u64(field: string): number {
    return sumPerCpu(this.value, this.stride, this.layout.offset(field));
  }

  array(field: string, length: number): number[] {
    return sumPerCpuArray(this.value, this.stride, this.layout.offset(field), length);
  }

  hist(field: string, labels: Labels): Log2Sample {
    const base = this.layout.offset(field);
    const h = this.layout.nested(field);
    return {
      labels,
      slots: sumPerCpuArray(this.value, this.stride, base + h.offset('slots'), HIST_SLOTS),
      sum: sumPerCpu(this.value, this.stride, base + h.offset('sum')),
    };
  }
}

/** Every index of a per-CPU array map of structs, read once. */
export function perCpuArray(map: BpfMap, layout: Layout, count: number): PerCpuValue[] {
  return Array.from({ length: count }, (_, i) => new PerCpuValue(map.at(i), map.stride, layout));
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
