// SPDX-License-Identifier: Apache-2.0
// The TCP lifecycle object's events (struct conn_event in
// bpf/tcp-lifecycle.h): one per closed connection and per failed connect,
// decoded from the ring buffer's bytes. The layout comes from the object's BTF.
import type { Layout } from '../libbpf';
import { cString } from '../libbpf';
import type { FieldName, LabelOf } from '../libbpf/binding';
import { TCP_LIFECYCLE } from '../generated/tcp-lifecycle';
import type { Workload } from '../workload/resolver';

const { family: FAMILY, role: ROLE, connect_result: RESULT, event_kind: KIND, fin_from: FIN_FROM } = TCP_LIFECYCLE.enums;
type Binding = typeof TCP_LIFECYCLE;

/** Times are the kernel's monotonic clock in ns, 0: did not happen. Plain
 * numbers: exact below 2^53 (ids, bytes; times for 104 days of uptime). */
export interface ConnEvent {
  kind: LabelOf<typeof KIND>;
  family: LabelOf<typeof FAMILY>;
  role: LabelOf<typeof ROLE>;
  result: LabelOf<typeof RESULT>;
  startNs: number;
  establishedNs: number;
  finNs: number;
  finFrom: LabelOf<typeof FIN_FROM>;
  endNs: number;
  /** the connection's id; with sidecars, the inbound connection it serves
   * (parentId) and the first of the chain (rootId); 0: none */
  id: number;
  parentId: number;
  rootId: number;
  sentBytes: number;
  receivedBytes: number;
  retransmits: number;
  srttUs: number;
  pid: number;
  comm: string;
  /** the socket owner's cgroup v2 id, and what it resolves to (set by the
   * probe after decoding; undefined: not resolved) */
  cgroup: bigint;
  workload?: Workload;
  /** the peer's pod on this node (its pod_addrs number), 0: none */
  peer: number;
  peerWorkload?: { namespace: string; pod: string };
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
  for (let i = 0; i < 8;) {
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

/** The decoder of conn_event for one object's layout: offsets are looked up
 * once, here, not per event. */
export function connEventDecoder(l: Layout<FieldName<Binding, 'conn_event'>>, t: Layout<FieldName<Binding, 'tuple'>>): (buf: Buffer) => ConnEvent {
  const at = (f: FieldName<Binding, 'conn_event'>) => l.offset(f);
  const [start, established, fin, end, id, parent, root, sent, received] = (
    ['start_ns', 'established_ns', 'fin_ns', 'end_ns', 'id', 'parent_id', 'root_id', 'sent_bytes', 'received_bytes'] as const
  ).map(at);
  const [kind, familyAt, role, result, finFrom, retransmits, srtt, tgid, comm, cgroup, peer] = (
    ['kind', 'family', 'role', 'result', 'fin_from', 'retransmits', 'srtt_us', 'tgid', 'comm', 'cgroup', 'peer'] as const
  ).map(at);
  const commLength = l.length('comm');
  const [laddr, raddr, lport, rport] = (['laddr', 'raddr', 'lport', 'rport'] as const).map((f) => at('ends') + t.offset(f));
  return (buf) => {
    const u64 = (at: number) => buf.readUInt32LE(at) + buf.readUInt32LE(at + 4) * 4294967296;
    const family = FAMILY.labels[buf[familyAt]!] ?? 'ipv4';
    return {
      kind: KIND.labels[buf[kind]!] ?? 'close',
      family,
      role: ROLE.labels[buf[role]!] ?? 'client',
      result: RESULT.labels[buf[result]!] ?? 'aborted',
      startNs: u64(start),
      establishedNs: u64(established),
      finNs: u64(fin),
      finFrom: FIN_FROM.labels[buf[finFrom]!] ?? 'none',
      endNs: u64(end),
      id: u64(id),
      parentId: u64(parent),
      rootId: u64(root),
      sentBytes: u64(sent),
      receivedBytes: u64(received),
      retransmits: buf.readUInt32LE(retransmits),
      srttUs: buf.readUInt32LE(srtt),
      pid: buf.readUInt32LE(tgid),
      comm: cString(buf, comm, commLength),
      cgroup: buf.readBigUInt64LE(cgroup),
      peer: buf.readUInt32LE(peer),
      localAddress: formatAddress(buf, laddr, family),
      localPort: buf.readUInt16LE(lport),
      peerAddress: formatAddress(buf, raddr, family),
      peerPort: buf.readUInt16LE(rport),
    };
  };
}
