// SPDX-License-Identifier: Apache-2.0
// struct conn_event, as the ring buffer hands it over, decoded field by field:
// events are written here at the offsets and widths of the generated
// binding, with times and counters near 2^53, both address families, every
// enum value the C names and some it does not.
import assert from 'node:assert/strict';
import type { FieldName } from '../../../src/libbpf/binding';
import { structLayout } from '../../../src/libbpf/binding';
import { TCP_LIFECYCLE } from '../../../src/generated/tcp-lifecycle';
import { connEventDecoder, formatAddress, type ConnEvent } from '../../../src/tracing/conn-event';

type Binding = typeof TCP_LIFECYCLE;
const { structs, enums } = TCP_LIFECYCLE;

/** Every field of struct conn_event but its padding, as the kernel fills it. */
type RawEvent = Record<Exclude<FieldName<Binding, 'conn_event'>, 'ends' | 'comm' | 'pad'>, number> & {
  ends: Record<'laddr' | 'raddr', number[]> & Record<'lport' | 'rport', number>;
  comm: Buffer;
};

/** A scalar at its offset, as wide as the binding says it is. */
function put(buf: Buffer, at: number, size: number, value: number): void {
  if (size === 8) buf.writeBigUInt64LE(BigInt(value), at);
  else if (size === 4) buf.writeUInt32LE(value, at);
  else if (size === 2) buf.writeUInt16LE(value, at);
  else if (size === 1) buf.writeUInt8(value, at);
  else throw new Error(`no scalar of ${size} bytes`);
}

/** The bytes of one event; the padding and whatever follows a short comm are
 * not zero, as nothing promises they are. */
function encode(raw: RawEvent, extra = 0): Buffer {
  const buf = Buffer.alloc(structs.conn_event.size + extra, 0xa5);
  for (const [name, f] of Object.entries(structs.conn_event.fields)) {
    if (name === 'pad') continue;
    if (name === 'comm') {
      assert.ok(raw.comm.length <= f.size);
      raw.comm.copy(buf, f.offset);
    } else if (name === 'ends') {
      for (const [end, e] of Object.entries(structs.tuple.fields)) {
        const value = raw.ends[end as keyof RawEvent['ends']];
        if (Array.isArray(value)) {
          assert.equal(value.length, e.size);
          Buffer.from(value).copy(buf, f.offset + e.offset);
        } else put(buf, f.offset + e.offset, e.size, value);
      }
    } else put(buf, f.offset, f.size, raw[name as Exclude<keyof RawEvent, 'ends' | 'comm'>]);
  }
  return buf;
}

/** 16 bytes from eight groups written out in full: "2001:0db8:0:0:0:0:0:1". */
function ipv6(full: string): number[] {
  const groups = full.split(':').map((g) => parseInt(g, 16));
  assert.equal(groups.length, 8);
  return groups.flatMap((g) => [g >> 8, g & 0xff]);
}

/** An IPv4 address as the kernel keeps it: the first 4 of 16 bytes. */
function ipv4(dotted: string): number[] {
  return [...dotted.split('.').map(Number), ...Array<number>(12).fill(0)];
}

/** A comm of up to 16 bytes; a shorter one ends with a NUL, then garbage. */
function comm(text: string): Buffer {
  const bytes = Buffer.from(text);
  return bytes.length >= 16 ? bytes : Buffer.concat([bytes, Buffer.from([0]), Buffer.alloc(15 - bytes.length, 'x')]);
}

const decode = connEventDecoder(structLayout(TCP_LIFECYCLE, 'conn_event'), structLayout(TCP_LIFECYCLE, 'tuple'));

/** A closed IPv4 server connection: u64s either side of 2^32, the largest
 * just below 2^53. */
const closed: RawEvent = {
  start_ns: 2 ** 53 - 5_000_000,
  established_ns: 2 ** 53 - 4_000_000,
  fin_ns: 2 ** 53 - 2_000_001,
  end_ns: 2 ** 53 - 1,
  id: 2 ** 53 - 2,
  parent_id: 2 ** 32 + 1,
  root_id: 2 ** 32 - 1,
  sent_bytes: 2 ** 52 + 12_345,
  received_bytes: 2 ** 40 + 7,
  retransmits: 0xfffffffe,
  srtt_us: 250_001,
  tgid: 4_194_303,
  cgroup: 2 ** 40 + 3,
  peer: 0xfffffffe,
  ends: { laddr: ipv4('10.1.2.3'), raddr: ipv4('192.168.255.254'), lport: 443, rport: 65535 },
  kind: enums.event_kind.values.EVENT_CLOSE,
  family: enums.family.values.FAMILY_IPV4,
  role: enums.role.values.ROLE_SERVER,
  result: enums.connect_result.values.CONNECT_ESTABLISHED,
  fin_from: enums.fin_from.values.FIN_PEER,
  comm: comm('nginx'),
};

const closedEvent: ConnEvent = {
  kind: 'close',
  family: 'ipv4',
  role: 'server',
  result: 'established',
  startNs: 9007199249740992,
  establishedNs: 9007199250740992,
  finNs: 9007199252740991,
  finFrom: 'peer',
  endNs: 9007199254740991,
  id: 9007199254740990,
  parentId: 4294967297,
  rootId: 4294967295,
  sentBytes: 4503599627382841,
  receivedBytes: 1099511627783,
  retransmits: 4294967294,
  srttUs: 250001,
  pid: 4194303,
  comm: 'nginx',
  cgroup: 1099511627779n,
  peer: 4294967294,
  localAddress: '10.1.2.3',
  localPort: 443,
  peerAddress: '192.168.255.254',
  peerPort: 65535,
};

describe('connection events', function () {
  it('decodes every field of an IPv4 close from the offsets of the generated binding', function () {
    assert.equal(structs.conn_event.size, 160);
    assert.deepEqual(decode(encode(closed)), closedEvent);
  });

  it('decodes an IPv6 connect that timed out, its addresses compressed as RFC 5952 says', function () {
    const failed: RawEvent = {
      ...closed,
      start_ns: 1_000_000_007,
      established_ns: 0,
      fin_ns: 0,
      end_ns: 4_000_000_009,
      id: 17,
      parent_id: 0,
      root_id: 0,
      sent_bytes: 0,
      received_bytes: 0,
      retransmits: 3,
      srtt_us: 0,
      tgid: 1,
      cgroup: 1,
      peer: 0,
      ends: { laddr: ipv6('2001:0db8:0:0:0:0:0:1'), raddr: ipv6('fe80:0:0:0:1:0:0:2'), lport: 40_000, rport: 8080 },
      kind: enums.event_kind.values.EVENT_CONNECT_FAILED,
      family: enums.family.values.FAMILY_IPV6,
      role: enums.role.values.ROLE_CLIENT,
      result: enums.connect_result.values.CONNECT_TIMEOUT,
      fin_from: enums.fin_from.values.FIN_NONE,
      comm: comm('curl'),
    };
    assert.deepEqual(decode(encode(failed)), {
      kind: 'connect_failed',
      family: 'ipv6',
      role: 'client',
      result: 'timeout',
      startNs: 1000000007,
      establishedNs: 0,
      finNs: 0,
      finFrom: 'none',
      endNs: 4000000009,
      id: 17,
      parentId: 0,
      rootId: 0,
      sentBytes: 0,
      receivedBytes: 0,
      retransmits: 3,
      srttUs: 0,
      pid: 1,
      comm: 'curl',
      cgroup: 1n,
      peer: 0,
      localAddress: '2001:db8::1',
      localPort: 40000,
      peerAddress: 'fe80::1:0:0:2',
      peerPort: 8080,
    } satisfies ConnEvent);
  });

  it('names every value of the enums by the C name without its prefix', function () {
    const { event_kind: kind, role, connect_result: result, fin_from: finFrom } = enums;
    const cases: [Partial<RawEvent>, Partial<ConnEvent>][] = [
      [{ kind: kind.values.EVENT_CONNECT_FAILED }, { kind: 'connect_failed' }],
      [{ kind: kind.values.EVENT_CLOSE }, { kind: 'close' }],
      [{ role: role.values.ROLE_CLIENT }, { role: 'client' }],
      [{ role: role.values.ROLE_SERVER }, { role: 'server' }],
      [{ result: result.values.CONNECT_ESTABLISHED }, { result: 'established' }],
      [{ result: result.values.CONNECT_REFUSED }, { result: 'refused' }],
      [{ result: result.values.CONNECT_TIMEOUT }, { result: 'timeout' }],
      [{ result: result.values.CONNECT_ABORTED }, { result: 'aborted' }],
      [{ fin_from: finFrom.values.FIN_NONE }, { finFrom: 'none' }],
      [{ fin_from: finFrom.values.FIN_LOCAL }, { finFrom: 'local' }],
      [{ fin_from: finFrom.values.FIN_PEER }, { finFrom: 'peer' }],
    ];
    for (const [raw, decoded] of cases) assert.deepEqual(decode(encode({ ...closed, ...raw })), { ...closedEvent, ...decoded }, JSON.stringify(raw));
  });

  it('keeps a comm of exactly 16 bytes whole, and stops a shorter one at its NUL', function () {
    const full = comm('sixteen-bytes-ok');
    assert.equal(full.length, 16);
    assert.equal(decode(encode({ ...closed, comm: full })).comm, 'sixteen-bytes-ok');
    // a record longer than the struct: the comm still ends at 16 bytes
    assert.equal(decode(encode({ ...closed, comm: full }, 8)).comm, 'sixteen-bytes-ok');
    assert.equal(decode(encode({ ...closed, comm: comm('') })).comm, '');
    assert.equal(decode(encode({ ...closed, comm: comm('fifteen-bytes-x') })).comm, 'fifteen-bytes-x');
  });

  it('falls back to close, ipv4, client, aborted and none for enum values the C does not name', function () {
    const odd = decode(
      encode({
        ...closed,
        ends: { ...closed.ends, laddr: ipv6('2001:0db8:0:0:0:0:0:1'), raddr: ipv6('fe80:0:0:0:1:0:0:2') },
        kind: 2,
        family: enums.family.values.FAMILY_COUNT,
        role: enums.role.values.ROLE_COUNT,
        result: enums.connect_result.values.CONNECT_RESULT_COUNT,
        fin_from: 255,
      }),
    );
    // the addresses are then read as IPv4: their first four bytes
    assert.deepEqual(odd, {
      ...closedEvent,
      kind: 'close',
      family: 'ipv4',
      role: 'client',
      result: 'aborted',
      finFrom: 'none',
      localAddress: '32.1.13.184',
      peerAddress: '254.128.0.0',
    });
    const connectFailed = decode(
      encode({ ...closed, kind: enums.event_kind.values.EVENT_CONNECT_FAILED, family: 0xff, role: 0x80, result: 0xff, fin_from: 3 }),
    );
    assert.deepEqual(
      [connectFailed.kind, connectFailed.family, connectFailed.role, connectFailed.result, connectFailed.finFrom],
      ['connect_failed', 'ipv4', 'client', 'aborted', 'none'],
    );
  });
});

describe('IPv6 addresses', function () {
  it('are written as RFC 5952 says: the longest run of two or more zero groups as "::", the first of equal runs', function () {
    for (const [full, text] of [
      ['2001:0db8:0:0:0:0:0:1', '2001:db8::1'],
      ['0:0:0:0:0:0:0:1', '::1'],
      ['0:0:0:0:0:0:0:0', '::'],
      ['fe80:0:0:0:1:0:0:2', 'fe80::1:0:0:2'],
      ['2001:db8:0:0:1:0:0:1', '2001:db8::1:0:0:1'],
      ['2001:db8:0:0:0:1:0:0', '2001:db8::1:0:0'],
      ['2001:db8:1:0:0:0:0:0', '2001:db8:1::'],
      ['2001:db8:0:1:1:1:1:1', '2001:db8:0:1:1:1:1:1'],
      ['2001:0:1:0:1:0:1:0', '2001:0:1:0:1:0:1:0'],
      ['0:1:2:3:4:5:6:0', '0:1:2:3:4:5:6:0'],
      ['2001:DB8:ABCD:12:0:0:0:FFFF', '2001:db8:abcd:12::ffff'],
      ['0:0:0:0:0:ffff:c000:0201', '::ffff:c000:201'],
    ] as const) {
      assert.equal(formatAddress(Buffer.from([0xee, 0xee, ...ipv6(full)]), 2, 'ipv6'), text, full);
    }
  });

  it('and IPv4 ones as the first four bytes, dotted', function () {
    assert.equal(formatAddress(Buffer.from([0xee, ...ipv4('127.0.0.1')]), 1, 'ipv4'), '127.0.0.1');
    assert.equal(formatAddress(Buffer.from(ipv4('255.255.255.255')), 0, 'ipv4'), '255.255.255.255');
  });
});
