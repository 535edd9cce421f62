// SPDX-License-Identifier: Apache-2.0
// accept: every passive TCP open that reached established, by listening port;
// handshake time and accept-queue wait; attributed to the process whose
// accept() returned it (syscalls:sys_exit_accept{,4}), which is what --pid
// compares. Needs BTF, kernel 5.8+, tracefs.
//   bpfnet_tcp_accepts_total{family="ipv6",port="443"} 1200
import { CollectedCounter } from '../metrics/collected';
import { Log2Histogram } from '../metrics/log2-histogram';
import type { ProbeContext } from './probe';
import { FAMILIES, perScrape, type TcpLifecycle } from './tcp-lifecycle';

export function registerAcceptMetrics(tcp: TcpLifecycle, ctx: ProbeContext): void {
  const { registry, failures } = ctx;
  const read = perScrape(() => tcp.readArray('tcp_accept_stats', 'accept', FAMILIES.length));

  new CollectedCounter({
    name: 'bpfnet_tcp_accepts_total',
    help: `TCP passive opens that reached established, by local (listening) port; counted when accept() returns them, or at close if never accepted. port="other" holds ports beyond the first ${ctx.options.acceptPortLimit}.`,
    labelNames: ['family', 'port'],
    registry,
    failures,
    collect: () =>
      tcp
        .readAccepts()
        .filter((a) => a.port !== 0 || a.count > 0)
        .map((a) => ({ labels: { family: FAMILIES[a.family] ?? 'unknown', port: a.port === 0 ? 'other' : String(a.port) }, value: a.count })),
  });

  new Log2Histogram({
    name: 'bpfnet_tcp_accept_handshake_duration_seconds',
    help: 'Time from the SYN-ACK sent to the handshake-completing ACK received (the kernel\'s own SYN-ACK RTT sample; from the first SYN-ACK when it was retransmitted).',
    labelNames: ['family'],
    minExp: 10,
    maxExp: 37,
    scale: 1e9,
    registry,
    failures,
    collect: () => read().map((stats, f) => stats.hist('handshake_ns', { family: FAMILIES[f]! })),
  });

  new Log2Histogram({
    name: 'bpfnet_tcp_accept_queue_duration_seconds',
    help: 'Time an established connection waited in the accept queue until accept() returned it.',
    labelNames: ['family'],
    minExp: 10,
    maxExp: 37,
    scale: 1e9,
    registry,
    failures,
    collect: () => read().map((stats, f) => stats.hist('queue_ns', { family: FAMILIES[f]! })),
  });
}
