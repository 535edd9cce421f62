// SPDX-License-Identifier: Apache-2.0
// Histograms kept by BPF code as log2 slots (bpf/include/histogram.h) and read
// at scrape time. Slot i counts values in (2^(i-1), 2^i]; the exposed buckets
// are a chosen range of those powers of two, so every cumulative count is exact.
import { TCP_LIFECYCLE } from '../generated/tcp-lifecycle';

/** struct hist's slots (bpf/include/histogram.h), as every object has it */
export const HIST_SLOTS = TCP_LIFECYCLE.structs.hist.fields.slots.length;

/** The Prometheus bucket bound (le) of slot exp, in base units. */
export function bucketBound(exp: number, scale: number): number {
  return 2 ** exp / scale;
}

/** Cumulative counts at 2^minExp..2^maxExp and the total, from log2 slots. */
export function cumulativeBuckets(slots: ArrayLike<number>, minExp: number, maxExp: number): { buckets: number[]; count: number } {
  const buckets: number[] = [];
  let running = 0;
  for (let i = 0; i < slots.length; i++) {
    running += slots[i]!;
    if (i >= minExp && i <= maxExp) buckets.push(running);
  }
  // slots below minExp fold into the first bucket, above maxExp into +Inf
  return { buckets, count: running };
}
