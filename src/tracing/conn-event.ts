// SPDX-License-Identifier: Apache-2.0
// The TCP lifecycle object's events (struct conn_event in
// bpf/tcp-lifecycle.h): one per closed connection and per failed connect,
// decoded from the ring buffer's bytes. The layout comes from the object's BTF.
import type { Layout, StructSpec } from '../libbpf';
import { cString } from '../libbpf';
import { CONNECT_RESULTS, FAMILIES, ROLES } from '../probes/tcp-lifecycle';

export const CONN_EVENT_SPEC: StructSpec = {
  struct: 'conn_event',
  fields: {
    start_ns: 'u64', established_ns: 'u64', fin_ns: 'u64', end_ns: 'u64', id: 'u64', parent_id: 'u64', root_id: 'u64',
    sent_bytes: 'u64', received_bytes: 'u64', retransmits: 'u32', srtt_us: 'u32', tgid: 'u32',
    ends: { struct: 'tuple', fields: { laddr: { array: 'u8', length: 16 }, raddr: { array: 'u8', length: 16 }, lport: 'u16', rport: 'u16' } },
    kind: 'u8', family: 'u8', role: 'u8', result: 'u8', fin_from: 'u8', comm: { array: 'u8', length: 16 },
  },
};

const KINDS = ['connect_failed', 'close'] as const;
const FIN_FROM = ['none', 'local', 'peer'] as const;

/** Times are the kernel's monotonic clock in ns; 0n: did not happen. */
export interface ConnEvent {
  kind: (typeof KINDS)[number];
  family: (typeof FAMILIES)[number];
  role: (typeof ROLES)[number];
  result: (typeof CONNECT_RESULTS)[number];
  startNs: bigint;
  establishedNs: bigint;
  finNs: bigint;
  finFrom: (typeof FIN_FROM)[number];
  endNs: bigint;
  /** the connection's id; with sidecars, the inbound connection it serves
   * (parentId) and the first of the chain (rootId); 0n: none */
  id: bigint;
  parentId: bigint;
  rootId: bigint;
  sentBytes: number;
  receivedBytes: number;
  retransmits: number;
  srttUs: number;
  pid: number;
  comm: string;
  localAddress: string;
  localPort: number;
  peerAddress: string;
  peerPort: number;
}

/** An address as the kernel keeps it: IPv4 in the first 4 bytes. */
export function formatAddress(bytes: Buffer, offset: number, family: string): string {
  if (family === 'ipv4') return `${bytes[offset]}.${bytes[offset + 1]}.${bytes[offset + 2]}.${bytes[offset + 3]}`;
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(bytes.readUInt16BE(offset + i).toString(16));
  // the longest run of zero groups (two or more) becomes "::" (RFC 5952)
  let best = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== '0') {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === '0') j++;
    if (j - i > bestLen) [best, bestLen] = [i, j - i];
    i = j;
  }
  if (best < 0) return groups.join(':');
  return `${groups.slice(0, best).join(':')}::${groups.slice(best + bestLen).join(':')}`;
}

export function decodeConnEvent(buf: Buffer, l: Layout): ConnEvent {
  const u64 = (f: string) => buf.readBigUInt64LE(l.offset(f));
  const ends = l.offset('ends');
  const t = l.nested('ends');
  const family = FAMILIES[buf.readUInt8(l.offset('family'))] ?? 'ipv4';
  return {
    kind: KINDS[buf.readUInt8(l.offset('kind'))] ?? 'close',
    family,
    role: ROLES[buf.readUInt8(l.offset('role'))] ?? 'client',
    result: CONNECT_RESULTS[buf.readUInt8(l.offset('result'))] ?? 'aborted',
    startNs: u64('start_ns'),
    establishedNs: u64('established_ns'),
    finNs: u64('fin_ns'),
    finFrom: FIN_FROM[buf.readUInt8(l.offset('fin_from'))] ?? 'none',
    endNs: u64('end_ns'),
    id: u64('id'),
    parentId: u64('parent_id'),
    rootId: u64('root_id'),
    sentBytes: Number(u64('sent_bytes')),
    receivedBytes: Number(u64('received_bytes')),
    retransmits: buf.readUInt32LE(l.offset('retransmits')),
    srttUs: buf.readUInt32LE(l.offset('srtt_us')),
    pid: buf.readUInt32LE(l.offset('tgid')),
    comm: cString(buf, l.offset('comm'), 16),
    localAddress: formatAddress(buf, ends + t.offset('laddr'), family),
    localPort: buf.readUInt16LE(ends + t.offset('lport')),
    peerAddress: formatAddress(buf, ends + t.offset('raddr'), family),
    peerPort: buf.readUInt16LE(ends + t.offset('rport')),
  };
}
