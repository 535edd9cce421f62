// SPDX-License-Identifier: Apache-2.0
// Kernel times (CLOCK_MONOTONIC, as bpf_ktime_get_ns() reads it) to wall-clock
// times for spans. process.hrtime reads the same monotonic clock; the offset
// to the wall clock is measured with sub-microsecond reads and measured again
// now and then, so that it follows the system clock's adjustments. Seconds
// and nanoseconds are kept apart, so that the sum is exact to the nanosecond
// (a wall-clock time in nanoseconds is past 2^53).
import type { HrTime } from '@opentelemetry/api';

const REMEASURE_S = 60;
const NS = 1e9;

export class KernelClock {
  private offsetS = 0;
  private offsetNs = 0;
  private measuredAt = -REMEASURE_S;

  private measure(): void {
    // the wall read between two monotonic reads: their midpoint is its moment
    const [s0, n0] = process.hrtime();
    const wallMs = performance.timeOrigin + performance.now();
    const [s1, n1] = process.hrtime();
    const wallS = Math.floor(wallMs / 1000);
    const wallNs = Math.round((wallMs - wallS * 1000) * 1e6);
    // midpoint in ns relative to s0 (under a second apart)
    const mid = (n0 + (s1 - s0) * NS + n1) / 2;
    const monoS = s0 + Math.floor(mid / NS);
    const monoNs = Math.round(mid % NS);
    let ns = wallNs - monoNs;
    let s = wallS - monoS;
    if (ns < 0) [s, ns] = [s - 1, ns + NS];
    this.offsetS = s;
    this.offsetNs = ns;
    this.measuredAt = s1;
  }

  /** Measures the offset again if it is due by nowNs, a kernel time of
   * now: an event's own time tells when, so no clock is read per event.
   * Between two calls every conversion uses one offset, so that the times of
   * one span keep their exact differences. */
  sync(nowNs: number): void {
    if (nowNs / NS - this.measuredAt >= REMEASURE_S) this.measure();
  }

  /** A kernel monotonic time in ns (exact below 2^53: 104 days of uptime,
   * within nanoseconds after) as an OpenTelemetry wall-clock time. */
  toHrTime(monotonicNs: number): HrTime {
    const s = Math.floor(monotonicNs / NS);
    let ns = monotonicNs - s * NS + this.offsetNs;
    let sec = s + this.offsetS;
    if (ns >= NS) [sec, ns] = [sec + 1, ns - NS];
    return [sec, ns];
  }
}
