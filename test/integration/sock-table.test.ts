// SPDX-License-Identifier: Apache-2.0
// The per-socket table of bpf/include/sock-table.h, run in the kernel: slots
// claimed, found and freed, and sockets whose set is full kept in the
// overflow map, never lost.
import assert from 'node:assert/strict';
import path from 'node:path';
import { BpfObject } from '../../src/libbpf';
import { requireRoot } from '../helpers/privileges';

const OBJECT = path.resolve(__dirname, '..', '..', '..', 'test-bpf', 'sock-table.bpf.o');
const OPS = 32;
const WAYS = 4;
const PUT = 1n;
const GET = 2n;
const DEL = 3n;

/** The set of a socket address, as sock_table_set() computes it. */
function setOf(sk: bigint, mask: bigint): bigint {
  return ((((sk >> 6n) * 0x9e3779b97f4a7c15n) & 0xffffffffffffffffn) >> 40n) & 0xffffffffn & mask;
}

describe('socket table in BPF', function () {
  let obj: BpfObject;
  const SETS = 4n;

  before(function () {
    requireRoot();
    obj = BpfObject.open(OBJECT);
    obj.setMaxEntries('sock_table', Number(SETS) * WAYS);
    obj.setConstants({ sock_table_set_mask: Number(SETS - 1n) });
    obj.load();
  });

  after(function () {
    obj?.close();
  });

  /** Runs ops in one program run; returns each op's result and the overflow count. */
  function run(ops: [bigint, bigint, bigint?][]): { results: bigint[]; overflowed: bigint } {
    const layout = obj.layout({
      struct: 'table_ops',
      fields: { op: { array: 'u64', length: OPS }, sk: { array: 'u64', length: OPS }, value: { array: 'u64', length: OPS }, overflowed: 'u64' },
    });
    const ctx = Buffer.alloc(layout.size);
    ops.forEach(([op, sk, value], i) => {
      ctx.writeBigUInt64LE(op, layout.offset('op') + 8 * i);
      ctx.writeBigUInt64LE(sk, layout.offset('sk') + 8 * i);
      ctx.writeBigUInt64LE(value ?? 0n, layout.offset('value') + 8 * i);
    });
    assert.equal(obj.program('table_ops').testRun(ctx), 0);
    return {
      results: ops.map((_, i) => ctx.readBigUInt64LE(layout.offset('value') + 8 * i)),
      overflowed: ctx.readBigUInt64LE(layout.offset('overflowed')),
    };
  }

  /** n socket-like addresses (64-byte aligned, kernel range) all in one set. */
  function colliding(n: number, set: bigint): bigint[] {
    const out: bigint[] = [];
    for (let sk = 0xffff888100000000n; out.length < n; sk += 0x800n) if (setOf(sk, SETS - 1n) === set) out.push(sk);
    return out;
  }

  it('finds what was put, and nothing for a socket never put', function () {
    const [a, b] = colliding(2, 1n);
    const other = colliding(1, 2n)[0]!;
    const r = run([
      [PUT, a!, 11n],
      [PUT, b!, 22n],
      [GET, a!],
      [GET, b!],
      [GET, other],
      [DEL, a!],
      [GET, a!],
      [GET, b!],
      [DEL, b!],
    ]);
    assert.deepEqual(r.results, [1n, 1n, 11n, 22n, 0n, 0n, 0n, 22n, 0n]);
    assert.equal(r.overflowed, 0n);
  });

  it('keeps sockets beyond a full set in the overflow map, and frees both', function () {
    const sks = colliding(7, 3n);
    const puts = sks.map((sk, i): [bigint, bigint, bigint] => [PUT, sk, BigInt(100 + i)]);
    const full = run([...puts, ...sks.map((sk): [bigint, bigint] => [GET, sk])]);
    assert.deepEqual(full.results, [...sks.map(() => 1n), ...sks.map((_, i) => BigInt(100 + i))]);
    assert.equal(full.overflowed, BigInt(7 - WAYS));

    // free one slot and one overflowed entry; a new socket takes the slot
    const [newcomer] = colliding(8, 3n).slice(7);
    const after = run([
      [DEL, sks[0]!],
      [DEL, sks[6]!],
      [PUT, newcomer!, 999n],
      [GET, newcomer!],
      [GET, sks[0]!],
      [GET, sks[6]!],
      [GET, sks[5]!],
    ]);
    assert.deepEqual(after.results, [0n, 0n, 1n, 999n, 0n, 0n, 105n]);
    assert.equal(after.overflowed, 2n);

    // putting a socket that is already there reuses its entry
    const again = run([
      [PUT, sks[1]!, 7n],
      [GET, sks[1]!],
    ]);
    assert.deepEqual(again.results, [1n, 7n]);
    run([...sks.slice(1, 6), newcomer!].map((sk): [bigint, bigint] => [DEL, sk]));
    assert.equal(run([]).overflowed, 0n);
  });
});
