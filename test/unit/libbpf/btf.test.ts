// SPDX-License-Identifier: Apache-2.0
// The BTF reader and struct binding, against the real compiled object and the
// running kernel's BTF: layouts userspace reads must match the C structs.
import assert from 'node:assert/strict';
import { BpfObject, bindLayout, Kind, LayoutError, vmlinuxBtf } from '../../../src/libbpf';
import { bpfObjectPath } from '../../../src/paths';

describe('BTF', function () {
  let obj: BpfObject;

  before(function () {
    obj = BpfObject.open(bpfObjectPath('tcp-lifecycle')); // parsing needs no privileges
  });

  after(function () {
    obj?.close();
  });

  it('reads offsets, sizes and array lengths as the C compiler laid them out', function () {
    const hist = obj.btf.layout('hist');
    assert.equal(hist.size, 64 * 8 + 8);
    assert.deepEqual(hist.fields.get('slots'), { offset: 0, size: 512, length: 64 });
    assert.deepEqual(hist.fields.get('sum'), { offset: 512, size: 8, length: undefined });
    const close = obj.btf.layout('close_stats');
    assert.deepEqual(
      [...close.fields].map(([name, f]) => [name, f.offset]),
      [
        ['retransmits', 0],
        ['lifetime_ns', 8],
        ['sent_bytes', 528],
        ['received_bytes', 1048],
        ['srtt_ns', 1568],
      ],
    );
    assert.equal(close.size, 2088);
  });

  it('finds where each constant sits in .rodata', function () {
    const vars = ['enable_connect', 'enable_accept', 'enable_close'].map((v) => obj.btf.variable('.rodata', v));
    assert.ok(
      vars.every((v) => v && v.size === 1),
      JSON.stringify(vars),
    );
    assert.equal(new Set(vars.map((v) => v!.offset)).size, 3);
    assert.equal(obj.btf.variable('.rodata', 'no_such_constant'), undefined);
  });

  it('refuses a layout that no longer matches the C struct', function () {
    const hist = { struct: 'hist', fields: { slots: { array: 'u64', length: 64 }, sum: 'u64' } } as const;
    assert.throws(
      () => bindLayout(obj.btf, { struct: 'close_stats', fields: { retransmits: 'u32' } }),
      (e: Error) => e instanceof LayoutError && /field retransmits is 8 bytes, userspace expects 4/.test(e.message),
    );
    assert.throws(() => bindLayout(obj.btf, { struct: 'close_stats', fields: { renamed: 'u64' } }), /has no field renamed/);
    assert.throws(() => bindLayout(obj.btf, { struct: 'hist', fields: { slots: { array: 'u64', length: 32 } } }), /has 64 elements, userspace expects 32/);
    assert.throws(() => bindLayout(obj.btf, { struct: 'no_such', fields: {} }), /struct no_such is not in the object's BTF/);
    assert.doesNotThrow(() => bindLayout(obj.btf, { struct: 'accept_stats', fields: { handshake_ns: hist, queue_ns: hist } }));
  });

  it("reads the running kernel's BTF: struct bpf_prog_info and enum values", function () {
    const btf = vmlinuxBtf();
    assert.ok(btf.count > 10_000);
    const info = btf.layout('bpf_prog_info');
    assert.deepEqual(info.fields.get('type'), { offset: 0, size: 4, length: undefined });
    assert.deepEqual(info.fields.get('name'), { offset: 64, size: 16, length: 16 });
    assert.ok(info.fields.get('run_time_ns')!.offset > info.fields.get('name')!.offset);
    assert.equal(btf.enumValues('bpf_map_type').get('BPF_MAP_TYPE_RINGBUF'), 27n);
    assert.ok(btf.find('btf_trace_inet_sock_set_state', Kind.Typedef));
  });
});
