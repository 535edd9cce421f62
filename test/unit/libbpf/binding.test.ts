// SPDX-License-Identifier: Apache-2.0
// The generated bindings (scripts/gen-bindings.ts) against the compiled
// objects: what they say of maps, programs, settings, structs and enums is
// what the C declares, and an object from another build is refused.
import assert from 'node:assert/strict';
import { BpfObject, LayoutError } from '../../../src/libbpf';
import { checkBinding, structLayout, type ObjectBinding } from '../../../src/libbpf/binding';
import { TCP_LIFECYCLE } from '../../../src/generated/tcp-lifecycle';
import { NETSTACK } from '../../../src/generated/netstack';
import { SOCK_REDIRECT } from '../../../src/generated/sock-redirect';
import { bpfObjectPath } from '../../../src/paths';
import { generate } from '../../../scripts/gen-bindings';

describe('generated bindings', function () {
  it('are what the generator reads from the objects now (no stale build)', function () {
    for (const b of [TCP_LIFECYCLE, NETSTACK, SOCK_REDIRECT]) {
      assert.deepEqual(generate(bpfObjectPath(b.file)).binding, JSON.parse(JSON.stringify(b)), b.file);
    }
  });

  it('name label values as the C enums do, in C order, without the count', function () {
    assert.deepEqual(TCP_LIFECYCLE.enums.family.labels, ['ipv4', 'ipv6']);
    assert.deepEqual(TCP_LIFECYCLE.enums.connect_result.labels, ['established', 'refused', 'timeout', 'aborted']);
    assert.equal(TCP_LIFECYCLE.enums.connect_result.values.CONNECT_RESULT_COUNT, 4);
    assert.deepEqual(NETSTACK.enums.ns_error.labels, ['netstack_latency', 'netstack_drops']);
    assert.deepEqual(SOCK_REDIRECT.enums.fallback_reason.labels, [
      'peer_missing',
      'redirect_failed',
      'policy',
      'stack_used',
      'receiver_full',
      'memory_pressure',
    ]);
    // one family enum, shared by every object (bpf/include/bpfnet.h)
    assert.deepEqual(NETSTACK.enums.family, TCP_LIFECYCLE.enums.family);
    assert.deepEqual(SOCK_REDIRECT.enums.family, TCP_LIFECYCLE.enums.family);
  });

  it('give maps with their types and sizes, programs with their sections, settings with their types', function () {
    assert.deepEqual(TCP_LIFECYCLE.maps.tcp_closes, { type: 'hash', maxEntries: 10000, key: 'close_key', value: 'close_stats' });
    assert.deepEqual(TCP_LIFECYCLE.maps.sidecar_comms.key, 'char[16]');
    assert.equal(TCP_LIFECYCLE.maps.tcp_events.type, 'ringbuf');
    assert.equal(TCP_LIFECYCLE.programs.tcp_state.section, 'tp_btf/inet_sock_set_state');
    assert.equal(SOCK_REDIRECT.programs.redirect_msg.section, 'sk_msg');
    assert.equal(TCP_LIFECYCLE.settings.enable_connect, 'bool');
    assert.equal(TCP_LIFECYCLE.settings.sock_table_set_mask, 'u32');
    assert.equal(TCP_LIFECYCLE.globals.sock_table_overflowed, '.bss');
    assert.ok(!('bpfnet_exports' in TCP_LIFECYCLE.settings), 'the export list is no setting');
  });

  it('lay structs out as the C compiler did, nested structs included', function () {
    const obj = BpfObject.open(bpfObjectPath(TCP_LIFECYCLE.file));
    try {
      for (const [name, s] of Object.entries(TCP_LIFECYCLE.structs)) {
        const actual = obj.btf.layout(name);
        assert.equal(s.size, actual.size, name);
        for (const [field, f] of Object.entries(s.fields)) assert.equal(f.offset, actual.fields.get(field)?.offset, `${name}.${field}`);
      }
    } finally {
      obj.close();
    }
    const event = structLayout(TCP_LIFECYCLE, 'conn_event');
    assert.equal(event.length('comm'), 16);
    assert.equal(event.nested('ends').offset('rport'), TCP_LIFECYCLE.structs.tuple.fields.rport.offset);
    assert.equal(TCP_LIFECYCLE.structs.conn_event.fields.ends.type, 'tuple');
    assert.deepEqual(TCP_LIFECYCLE.structs.hist.fields.slots, { offset: 0, size: 512, type: 'u64', length: 64 });
  });

  it('refuse an object whose structs or map sizes differ from the build they came from', function () {
    const moved = JSON.parse(JSON.stringify(TCP_LIFECYCLE)) as ObjectBinding & { structs: Record<string, { fields: Record<string, { offset: number }> }> };
    moved.structs.close_stats!.fields.retransmits!.offset = 8;
    const obj = BpfObject.open(bpfObjectPath(TCP_LIFECYCLE.file));
    try {
      assert.throws(
        () => checkBinding(moved, obj.btf, 'tcp-lifecycle.bpf.o'),
        (e: Error) => e instanceof LayoutError && /struct close_stats differs.*npm run build/.test(e.message),
      );
    } finally {
      obj.close();
    }
    const resized = JSON.parse(JSON.stringify(TCP_LIFECYCLE)) as ObjectBinding & { maps: Record<string, { maxEntries: number }> };
    resized.maps.sidecar_stats!.maxEntries = 8;
    assert.throws(
      () => BpfObject.open(bpfObjectPath(TCP_LIFECYCLE.file), resized),
      /map sidecar_stats has 16 entries, the exporter was built for 8: rebuild both/,
    );
  });
});
