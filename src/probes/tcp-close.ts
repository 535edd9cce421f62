// SPDX-License-Identifier: Apache-2.0
// close: each closed TCP connection's payload bytes each way (without the SYN
// and FIN that the kernel's byte counters include), lifetime, retransmitted
// segments and smoothed RTT, from sock:inet_sock_set_state (tp_btf). Counts
// connections that opened while the exporter ran. Needs BTF, kernel 5.12+.
//   bpfnet_tcp_sent_bytes_total{family="ipv4",role="client"} 1048576
import { CollectedCounter, type Sample } from '../metrics/collected';
import { Log2Histogram, type Log2Sample } from '../metrics/log2-histogram';
import type { ProbeContext } from '../component';
import type { TcpOptions } from '../options';
import { perScrape } from '../metrics/per-cpu';
import { FAMILIES, ROLES, type StatsOf, type TcpLifecycle } from './tcp-lifecycle';

interface Keyed {
  labels: { family: string; role: string };
  stats: StatsOf<'tcp_close_stats'>;
}

export function registerCloseMetrics(tcp: TcpLifecycle, ctx: ProbeContext<TcpOptions>): void {
  const { registry, failures } = ctx;
  // tcp_close_stats[family * 2 + role]
  const read = perScrape((): Keyed[] =>
    tcp.readArray('tcp_close_stats').map((stats, i) => ({
      labels: { family: FAMILIES[Math.floor(i / ROLES.length)]!, role: ROLES[i % ROLES.length]! },
      stats,
    })),
  );
  const hist = (field: 'lifetime_ns' | 'sent_bytes' | 'received_bytes') => (): Log2Sample[] => read().map(({ labels, stats }) => stats.hist(field, labels));
  const counter = (name: string, help: string, value: (k: Keyed) => number) =>
    new CollectedCounter({
      name,
      help,
      labelNames: ['family', 'role'],
      registry,
      failures,
      collect: (): Sample[] => read().map((k) => ({ labels: k.labels, value: value(k) })),
    });
  const roles = 'role is client for active opens, server for passive opens';

  counter('bpfnet_tcp_closes_total', `TCP connections closed after being established; ${roles}.`, (k) =>
    k.stats.hist('lifetime_ns', k.labels).slots.reduce((a, b) => a + b, 0),
  );
  counter(
    'bpfnet_tcp_sent_bytes_total',
    `Payload bytes sent and acknowledged by the peer, over closed connections; ${roles}.`,
    (k) => k.stats.hist('sent_bytes', k.labels).sum,
  );
  counter(
    'bpfnet_tcp_received_bytes_total',
    `Payload bytes received in order, over closed connections; ${roles}.`,
    (k) => k.stats.hist('received_bytes', k.labels).sum,
  );
  counter('bpfnet_tcp_retransmits_total', `Segments retransmitted, over closed connections (SYN-ACK retransmissions included); ${roles}.`, (k) =>
    k.stats.u64('retransmits'),
  );

  const byConnection = { labelNames: ['family', 'role'], registry, failures };
  new Log2Histogram({
    ...byConnection,
    name: 'bpfnet_tcp_connection_duration_seconds',
    help: 'Connection lifetime, from established to closed.',
    minExp: 10, // 1.024 us
    maxExp: 45, // 9.8 h
    scale: 1e9,
    collect: hist('lifetime_ns'),
  });
  new Log2Histogram({
    ...byConnection,
    name: 'bpfnet_tcp_connection_sent_bytes',
    help: 'Payload bytes a connection sent (acknowledged by the peer) over its life.',
    minExp: 0,
    maxExp: 36, // 64 GiB
    scale: 1,
    collect: hist('sent_bytes'),
  });
  new Log2Histogram({
    ...byConnection,
    name: 'bpfnet_tcp_connection_received_bytes',
    help: 'Payload bytes a connection received over its life.',
    minExp: 0,
    maxExp: 36,
    scale: 1,
    collect: hist('received_bytes'),
  });
  new Log2Histogram({
    name: 'bpfnet_tcp_srtt_seconds',
    help: 'Smoothed round-trip time of connections when they closed.',
    labelNames: ['family'],
    minExp: 10,
    maxExp: 33, // 8.6 s
    scale: 1e9,
    registry,
    failures,
    collect: () =>
      FAMILIES.map((family) => {
        const both = read()
          .filter((k) => k.labels.family === family)
          .map((k) => k.stats.hist('srtt_ns', { family }));
        return {
          labels: { family },
          slots: both[0]!.slots.map((n, i) => n + both[1]!.slots[i]!),
          sum: both[0]!.sum + both[1]!.sum,
        };
      }),
  });
}
