// SPDX-License-Identifier: Apache-2.0
// Turning log2 slots into Prometheus buckets: edges and folding (the
// lines they make: test/unit/metrics/table.test.ts).
import assert from 'node:assert/strict';
import { bucketBound, cumulativeBuckets, HIST_SLOTS } from '../../../src/metrics/log2-histogram';

const slotsWith = (counts: Record<number, number>) => Array.from({ length: HIST_SLOTS }, (_, i) => counts[i] ?? 0);

describe('log2 histograms', function () {
  it('gives each exposed bucket its power-of-two bound in base units', function () {
    assert.equal(bucketBound(10, 1e9), 1.024e-6);
    assert.equal(String(bucketBound(30, 1e9)), '1.073741824');
    assert.equal(bucketBound(0, 1), 1);
    assert.equal(bucketBound(36, 1), 68719476736);
  });

  it('folds slots below the range into the first bucket and above it into +Inf only', function () {
    // slots 0..2 below, 3..5 exposed, 6 and 63 above
    const { buckets, count } = cumulativeBuckets(slotsWith({ 0: 1, 2: 2, 3: 4, 5: 8, 6: 16, 63: 32 }), 3, 5);
    assert.deepEqual(buckets, [1 + 2 + 4, 7, 7 + 8]);
    assert.equal(count, 63);
  });
});
