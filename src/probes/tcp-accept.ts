// SPDX-License-Identifier: Apache-2.0
// accept: every passive TCP open that reached established, by listening port
// and the command of the process whose accept() returned it (fexit on
// inet_csk_accept where the kernel allows it, else syscalls:sys_exit_accept{,4};
// that process is also what --pid compares); handshake time and accept-queue
// wait. Needs BTF, kernel 5.12+, and fentry or tracefs.
//   bpfnet_tcp_accepts_total{comm="nginx",family="ipv6",port="443"} 1200
import { CollectedCounter } from '../metrics/collected';
import type { ProbeContext } from '../component';
import type { TcpOptions } from '../options';
import { perScrape } from '../metrics/per-cpu';
import { FAMILIES, latencyByFamily, type TcpLifecycle } from './tcp-lifecycle';

export function registerAcceptMetrics(tcp: TcpLifecycle, ctx: ProbeContext<TcpOptions>): void {
  const { registry, failures } = ctx;
  const read = perScrape(() => tcp.readArray('tcp_accept_stats'));

  new CollectedCounter({
    name: 'bpfnet_tcp_accepts_total',
    help: `TCP passive opens that reached established, by local (listening) port and the command of the process that accepted them; counted when accept() returns them, or at close with comm="" if never accepted. port="other" holds what goes beyond ${ctx.options.acceptPortLimit} label sets.`,
    labelNames: ['family', 'port', 'comm'],
    registry,
    failures,
    collect: () =>
      tcp
        .readAccepts()
        .filter((a) => a.port !== 0 || a.count > 0)
        .map((a) => ({
          labels: { family: FAMILIES[a.family] ?? 'unknown', port: a.port === 0 ? 'other' : String(a.port), comm: a.comm },
          value: a.count,
        })),
  });

  latencyByFamily(
    ctx,
    'bpfnet_tcp_accept_handshake_duration_seconds',
    "Time from the SYN-ACK sent to the handshake-completing ACK received (the kernel's own SYN-ACK RTT sample; from the first SYN-ACK when it was retransmitted).",
    read,
    'handshake_ns',
  );
  latencyByFamily(
    ctx,
    'bpfnet_tcp_accept_queue_duration_seconds',
    'Time an established connection waited in the accept queue until accept() returned it.',
    read,
    'queue_ns',
  );
}
