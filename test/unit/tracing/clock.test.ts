// SPDX-License-Identifier: Apache-2.0
// The kernel's monotonic clock to wall-clock times: exact differences, the
// wall clock's value.
import assert from 'node:assert/strict';
import { KernelClock } from '../../../src/tracing/clock';

const ns = ([s, n]: [number, number]) => BigInt(s) * 1_000_000_000n + BigInt(n);

describe('kernel clock', function () {
  it('maps monotonic nanoseconds to wall-clock time, keeping every difference exact', function () {
    const clock = new KernelClock();
    const now = Number(process.hrtime.bigint());
    clock.sync(now);
    const at = clock.toHrTime(now);
    assert.ok(Number.isInteger(at[0]) && Number.isInteger(at[1]) && at[1] >= 0 && at[1] < 1e9);
    // the wall clock now, to within the reads' few milliseconds
    assert.ok(Math.abs(Number(ns(at) / 1_000_000n) - Date.now()) < 50, `${ns(at)} vs ${Date.now()}`);
    for (const d of [1, 999, 1_000_000_000 - 1, 1_000_000_000, 1_500_000_001, 86_400_000_000_123]) {
      assert.equal(ns(clock.toHrTime(now + d)) - ns(at), BigInt(d), `+${d} ns`);
    }
  });

  it('keeps one offset until a minute has passed by the times it is synced to', function () {
    const clock = new KernelClock();
    const now = Number(process.hrtime.bigint());
    clock.sync(now);
    const first = clock.toHrTime(now);
    clock.sync(now + 30e9); // not due: the same offset
    assert.deepEqual(clock.toHrTime(now), first);
  });

  it('keeps a time near a second boundary in range', function () {
    const clock = new KernelClock();
    const base = Math.floor(Number(process.hrtime.bigint()) / 1e9) * 1e9;
    clock.sync(base);
    for (let d = -3; d <= 3; d++) {
      const [, n] = clock.toHrTime(base + d);
      assert.ok(n >= 0 && n < 1e9, `${d}: ${n}`);
    }
  });
});
