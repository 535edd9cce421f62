// SPDX-License-Identifier: Apache-2.0
// Kernel times (CLOCK_MONOTONIC, as bpf_ktime_get_ns() reads it) to wall-clock
// times for spans. process.hrtime reads the same monotonic clock; the offset
// to the wall clock is measured with sub-microsecond reads and measured again
// now and then, so that it follows the system clock's adjustments.
import type { HrTime } from '@opentelemetry/api';

const REMEASURE_NS = 60_000_000_000n;

export class KernelClock {
  private offsetNs = 0n;
  private measuredAt = -REMEASURE_NS;

  /** Nanoseconds since the epoch now, from the wall clock (microsecond reads). */
  private static wallNs(): bigint {
    return BigInt(Math.round((performance.timeOrigin + performance.now()) * 1000)) * 1000n;
  }

  private offset(): bigint {
    const mono = process.hrtime.bigint();
    if (mono - this.measuredAt >= REMEASURE_NS) {
      // the wall read between two monotonic reads: their midpoint is its moment
      const before = process.hrtime.bigint();
      const wall = KernelClock.wallNs();
      const after = process.hrtime.bigint();
      this.offsetNs = wall - (before + after) / 2n;
      this.measuredAt = after;
    }
    return this.offsetNs;
  }

  /** A kernel monotonic time as an OpenTelemetry wall-clock time. */
  toHrTime(monotonicNs: bigint): HrTime {
    const ns = monotonicNs + this.offset();
    return [Number(ns / 1_000_000_000n), Number(ns % 1_000_000_000n)];
  }
}
