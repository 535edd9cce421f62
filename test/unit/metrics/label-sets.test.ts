// SPDX-License-Identifier: Apache-2.0
// Label sets kept across scrapes: equal sets are one object, so prom-client
// formats each once; different sets never share one.
import assert from 'node:assert/strict';
import { LabelSets } from '../../../src/metrics/label-sets';

describe('label sets', function () {
  it('gives equal label sets the same object, and keeps different ones apart', function () {
    const sets = new LabelSets();
    const a = sets.intern({ family: 'ipv4', port: '80' });
    assert.equal(sets.intern({ family: 'ipv4', port: '80' }), a);
    assert.notEqual(sets.intern({ family: 'ipv4', port: '8' }), a);
    // whatever a value holds (a process may name itself anything), it cannot pass for another set
    assert.notEqual(sets.intern({ family: 'ipv4","port":"80', port: '' }), sets.intern({ family: 'ipv4', port: '80' }));
    assert.ok(Object.isFrozen(a));
  });
});
