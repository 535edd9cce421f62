// SPDX-License-Identifier: Apache-2.0
// Turning log2 slots into Prometheus buckets: edges, folding, rendering.
import assert from 'node:assert/strict';
import { Registry } from 'prom-client';
import { Logger } from '../../../src/log';
import { bucketBound, cumulativeBuckets, HIST_SLOTS, Log2Histogram } from '../../../src/metrics/log2-histogram';
import { ScrapeFailures } from '../../../src/metrics/validate';

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

  it('renders buckets, sum and count, and keeps a broken read off the scrape', async function () {
    const registry = new Registry();
    const failures = new ScrapeFailures(registry, new Logger('error'));
    new Log2Histogram({
      name: 'test_seconds',
      help: 'test',
      labelNames: ['family'],
      minExp: 10,
      maxExp: 11,
      scale: 1e9,
      registry,
      failures,
      collect: () => [{ labels: { family: 'ipv4' }, slots: slotsWith({ 10: 2, 11: 1, 12: 1 }), sum: 5000 }],
    });
    new Log2Histogram({
      name: 'broken_bytes',
      help: 'fails to read',
      labelNames: [],
      minExp: 0,
      maxExp: 1,
      scale: 1,
      registry,
      failures,
      collect: () => {
        throw new Error('map gone');
      },
    });
    await registry.metrics();
    const text = await registry.metrics(); // the second scrape shows the first one's failure
    assert.match(text, /^test_seconds_bucket\{family="ipv4",le="0.000001024"\} 2$/m);
    assert.match(text, /^test_seconds_bucket\{family="ipv4",le="0.000002048"\} 3$/m);
    assert.match(text, /^test_seconds_bucket\{family="ipv4",le="\+Inf"\} 4$/m);
    assert.match(text, /^test_seconds_sum\{family="ipv4"\} 0.000005$/m);
    assert.match(text, /^test_seconds_count\{family="ipv4"\} 4$/m);
    assert.match(text, /^bpfnet_scrape_errors_total\{metric="broken_bytes"\} [12]$/m);
    assert.doesNotMatch(text, /^broken_bytes/m);
  });

  it('refuses bad definitions when built, not when scraped', function () {
    const registry = new Registry();
    const failures = new ScrapeFailures(registry, new Logger('error'));
    const base = { help: 'h', labelNames: [], minExp: 0, maxExp: 1, scale: 1, registry, failures, collect: () => [] };
    assert.throws(() => new Log2Histogram({ ...base, name: 'bad-name' }), /invalid metric name/);
    assert.throws(() => new Log2Histogram({ ...base, name: 'ok', labelNames: ['le'] }), /cannot have a label le/);
    assert.throws(() => new Log2Histogram({ ...base, name: 'ok2', minExp: 5, maxExp: 4 }), /bucket exponents/);
  });
});
