// SPDX-License-Identifier: Apache-2.0
// Span and trace ids from connection ids: distinct, well-formed, stable for
// one run and different between runs; sampling by trace, at the ratio asked.
import assert from 'node:assert/strict';
import { ConnectionIds } from '../../../src/tracing/ids';

describe('connection ids', function () {
  it('gives every connection its own well-formed span id, the same each time it is asked', function () {
    const ids = new ConnectionIds();
    const seen = new Set<string>();
    // small ids, ids around 2^32 (the halves' boundary), and large ones
    const inputs = [...Array.from({ length: 50_000 }, (_, i) => i), ...Array.from({ length: 1000 }, (_, i) => 2 ** 32 - 500 + i), 2 ** 53 - 1, 2 ** 40 + 7];
    for (const id of inputs) {
      const span = ids.spanId(id);
      assert.match(span, /^[0-9a-f]{16}$/);
      assert.notEqual(span, '0000000000000000');
      seen.add(span);
    }
    assert.equal(seen.size, inputs.length);
    assert.equal(ids.spanId(12345), ids.spanId(12345));
    assert.match(ids.traceId(7), /^[0-9a-f]{32}$/);
    assert.equal(ids.traceId(7), ids.traceId(7));
    assert.notEqual(ids.traceId(7), ids.traceId(8));
  });

  it('draws other ids in another run, and the same from the same seed', function () {
    const seed = Buffer.alloc(48, 7);
    assert.equal(new ConnectionIds(seed).spanId(1), new ConnectionIds(Buffer.from(seed)).spanId(1));
    assert.notEqual(new ConnectionIds().spanId(1), new ConnectionIds().spanId(1));
  });

  it('samples whole traces at the ratio: all at 1, none at 0, a quarter of 100,000 roots at 0.25', function () {
    const ids = new ConnectionIds();
    let kept = 0;
    for (let root = 1; root <= 100_000; root++) {
      assert.equal(ids.sampled(root, 1), true);
      assert.equal(ids.sampled(root, 0), false);
      if (ids.sampled(root, 0.25)) kept++;
      // the same answer for every span of the trace
      assert.equal(ids.sampled(root, 0.25), ids.sampled(root, 0.25));
    }
    // binomial(100000, 0.25): sd 137; 6 sd either way
    assert.ok(Math.abs(kept - 25_000) < 822, `kept ${kept}`);
  });
});
