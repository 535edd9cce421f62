// SPDX-License-Identifier: Apache-2.0
// The libbpf binding against the kernel: maps (single and batch operations,
// per-CPU values), ring buffers, pins, program statistics, and errors that
// carry the errno and the verifier's explanation.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { BpfError, BpfObject, closeFd, numPossibleCpus, openPinned, pinObject, RingBuffer, sumPerCpu, UpdateFlags } from '../../src/libbpf';
import { onCleanup } from '../helpers/cleanup';
import { requireRoot } from '../helpers/privileges';

const OBJECT = path.resolve(__dirname, '..', '..', '..', 'test-bpf', 'binding.bpf.o');

const u32 = (n: number) => {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n);
  return b;
};
const u64 = (n: number) => {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(BigInt(n));
  return b;
};

describe('libbpf binding', function () {
  let obj: BpfObject;

  before(function () {
    requireRoot();
    obj = BpfObject.open(OBJECT);
    obj.program('refused').autoload = false;
    obj.load();
  });

  after(function () {
    obj?.close();
  });

  it('looks up, updates, deletes and iterates a hash map', function () {
    const m = obj.map('numbers');
    assert.equal(m.lookup(u32(1)), undefined);
    m.update(u32(1), u64(10));
    m.update(u32(2), u64(20), UpdateFlags.NoExist);
    assert.throws(
      () => m.update(u32(2), u64(21), UpdateFlags.NoExist),
      (e: Error) => e instanceof BpfError && e.code === 'EEXIST',
    );
    assert.equal(m.lookup(u32(2))!.readBigUInt64LE(), 20n);
    assert.deepEqual([...m.keys()].map((k) => k.readUInt32LE()).sort(), [1, 2]);
    assert.equal(m.delete(u32(1)), true);
    assert.equal(m.delete(u32(1)), false);
    m.delete(u32(2));
  });

  it('reads and drains a map in batches larger and smaller than its content', function () {
    const m = obj.map('numbers');
    for (let i = 0; i < 1000; i++) m.update(u32(i), u64(i * 3));
    for (const batch of [1, 7, 256, 4096]) {
      const all = m.entries(batch);
      assert.equal(all.length, 1000, `batch ${batch}`);
      assert.ok(all.every((e) => e.value.readBigUInt64LE() === BigInt(e.key.readUInt32LE() * 3)));
    }
    const drained = m.drain(100);
    assert.equal(drained.length, 1000);
    assert.equal([...m.keys()].length, 0);
  });

  it('runs a program, sums a per-CPU value over every CPU and drains its ring buffer', async function () {
    const seen: number[] = [];
    const rb = new RingBuffer(obj.map('records'), (data) => seen.push(Number(data.readBigUInt64LE(0))));
    const closeRing = onCleanup('ring buffer', () => rb.close());
    const args = Buffer.alloc(8);
    args.writeUInt32LE(5, 0);
    args.writeUInt32LE(7, 4);
    assert.equal(obj.program('emit').testRun(args), 5);
    assert.equal(rb.consume(), 5);
    assert.deepEqual(seen, [0, 1, 2, 3, 4]);

    // driven by the event loop: the ring's descriptor turns readable
    rb.start();
    args.writeUInt32LE(3, 0);
    obj.program('emit').testRun(args);
    for (let i = 0; i < 50 && seen.length < 8; i++) await new Promise((r) => setTimeout(r, 10));
    assert.deepEqual(seen, [0, 1, 2, 3, 4, 0, 1, 2]);
    await closeRing();

    const pc = obj.map('per_cpu');
    const value = pc.lookup(u32(0))!;
    assert.equal(value.length, 8 * numPossibleCpus());
    assert.equal(sumPerCpu(value, pc.stride, 0), 14);
    assert.equal(obj.program('emit').info().name, 'emit');
  });

  it('drains a full ring in batches, giving the event loop a turn between them', async function () {
    const seen: number[] = [];
    const rb = new RingBuffer(obj.map('records'), (data) => seen.push(Number(data.readBigUInt64LE(0))), 16);
    const closeRing = onCleanup('ring buffer', () => rb.close());
    const args = Buffer.alloc(8);
    args.writeUInt32LE(64, 0);
    obj.program('emit').testRun(args);
    // what the event loop sees between turns: the count so far
    const turns: number[] = [];
    const watch = () => {
      turns.push(seen.length);
      if (seen.length < 64) setImmediate(watch);
    };
    rb.start();
    setImmediate(watch);
    for (let i = 0; i < 100 && seen.length < 64; i++) await new Promise((r) => setTimeout(r, 10));
    await closeRing();
    assert.deepEqual(
      seen,
      Array.from({ length: 64 }, (_, i) => i),
    );
    // never more than a batch between two turns; each batch was whole
    const steps = turns.slice(1).map((n, i) => n - turns[i]!);
    assert.ok(
      steps.every((d) => d === 0 || d === 16),
      `counts seen between turns: ${turns}`,
    );
    assert.deepEqual(
      [...new Set(turns)].filter((n) => n > 0),
      [16, 32, 48, 64],
    );
  });

  it('pins a map and opens it again by path', function () {
    const dir = '/sys/fs/bpf';
    if (!fs.existsSync(dir) || !fs.readFileSync('/proc/mounts', 'utf8').includes(' /sys/fs/bpf bpf ')) {
      throw new Error('bpffs is not mounted at /sys/fs/bpf: mount -t bpf bpf /sys/fs/bpf');
    }
    const pin = path.join(dir, `bpfnet-test-${process.pid}`);
    const m = obj.map('numbers');
    pinObject(m.fd, pin);
    const unpin = onCleanup(`pin ${pin}`, () => fs.rmSync(pin, { force: true }));
    m.update(u32(42), u64(4242));
    const fd = openPinned(pin);
    try {
      assert.ok(fd > 0);
    } finally {
      closeFd(fd);
      void unpin();
    }
    assert.throws(
      () => openPinned(pin),
      (e: Error) => e instanceof BpfError && e.code === 'ENOENT' && /open pinned/.test(e.message),
    );
    m.delete(u32(42));
  });

  it("reports a refused program with the errno and the verifier's log", function () {
    const bad = BpfObject.open(OBJECT);
    try {
      bad.program('emit').autoload = false;
      assert.throws(
        () => bad.load(),
        (e: Error) => {
          assert.ok(e instanceof BpfError);
          assert.equal(e.code, 'EACCES');
          assert.match(e.message, /^load BPF object .*binding\.bpf\.o: EACCES \(Permission denied\)$/);
          assert.ok(
            e.log.some((l) => /invalid mem access 'scalar'/.test(l)),
            e.log.join('\n'),
          );
          assert.match(e.detail(), /prog 'refused': failed to load/);
          assert.match(e.summary(), /^load BPF object .*binding\.bpf\.o: EACCES \(Permission denied\): R\d invalid mem access 'scalar'$/);
          return true;
        },
      );
    } finally {
      bad.close();
    }
  });

  it('names a missing map or program instead of crashing', function () {
    assert.throws(() => obj.map('no_such_map'), /find map no_such_map in .*: ENOENT/);
    assert.throws(() => obj.program('no_such_prog'), /find program no_such_prog in .*: ENOENT/);
    assert.throws(() => BpfObject.open('/nonexistent.bpf.o'), /open BPF object \/nonexistent.bpf.o: ENOENT/);
  });
});
