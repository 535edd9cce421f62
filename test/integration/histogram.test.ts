// SPDX-License-Identifier: Apache-2.0
// The BPF side of the histograms, run in the kernel: each value lands in the
// first slot whose bound 2^slot is >= the value.
import assert from 'node:assert/strict';
import path from 'node:path';
import { BpfObject } from '../../src/libbpf';
import { requireRoot } from '../helpers/privileges';

const OBJECT = path.resolve(__dirname, '..', '..', '..', 'test-bpf', 'hist-slot.bpf.o');

describe('histogram slots in BPF', function () {
  it('puts every value in the first power-of-two bucket that holds it', function () {
    requireRoot();
    const obj = BpfObject.open(OBJECT);
    try {
      obj.load();
      const values = [
        0n,
        1n,
        2n,
        3n,
        4n,
        5n,
        1023n,
        1024n,
        1025n,
        2n ** 31n,
        2n ** 31n + 1n,
        2n ** 32n,
        2n ** 32n + 1n,
        2n ** 62n,
        2n ** 62n + 1n,
        2n ** 63n,
        2n ** 64n - 1n,
      ];
      const layout = obj.layout({ struct: 'slot_test', fields: { values: { array: 'u64', length: 32 }, slots: { array: 'u32', length: 32 } } });
      const ctx = Buffer.alloc(layout.size);
      values.forEach((v, i) => ctx.writeBigUInt64LE(v, layout.offset('values') + 8 * i));
      assert.equal(obj.program('hist_slots').testRun(ctx), 0);
      const slots = values.map((_, i) => ctx.readUInt32LE(layout.offset('slots') + 4 * i));
      // slot s holds (2^(s-1), 2^s]; values past 2^63 stay in the last slot
      const expected = values.map((v) => {
        if (v <= 1n) return 0;
        let s = 0;
        while (2n ** BigInt(s) < v) s++;
        return Math.min(s, 63);
      });
      assert.deepEqual(slots, expected);
      assert.deepEqual(slots, [0, 0, 1, 2, 2, 3, 10, 10, 11, 31, 32, 32, 33, 62, 63, 63, 63]);
    } finally {
      obj.close();
    }
  });
});
