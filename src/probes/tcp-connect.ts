// SPDX-License-Identifier: Apache-2.0
// connect: every active TCP open by outcome, and its latency from SYN sent to
// established, from sock:inet_sock_set_state (tp_btf). Needs BTF, kernel 5.12+.
//   bpfnet_tcp_connects_total{family="ipv4",result="refused"} 3
import { CollectedCounter } from '../metrics/collected';
import type { ProbeContext } from '../component';
import type { TcpOptions } from '../options';
import { perScrape } from '../metrics/per-cpu';
import { CONNECT_RESULTS, FAMILIES, latencyByFamily, type TcpLifecycle } from './tcp-lifecycle';

export function registerConnectMetrics(tcp: TcpLifecycle, ctx: ProbeContext<TcpOptions>): void {
  const { registry, failures } = ctx;
  const read = perScrape(() => tcp.readArray('tcp_connect_stats'));

  new CollectedCounter({
    name: 'bpfnet_tcp_connects_total',
    help: 'TCP active opens (connect) by outcome: established, refused (RST), timeout (no answer to SYNs), aborted (closed by the application or failed otherwise before established).',
    labelNames: ['family', 'result'],
    registry,
    failures,
    collect: () =>
      read().flatMap((stats, f) =>
        stats.array('results').map((value, r) => ({
          labels: { family: FAMILIES[f]!, result: CONNECT_RESULTS[r]! },
          value,
        })),
      ),
  });

  latencyByFamily(
    ctx,
    'bpfnet_tcp_connect_duration_seconds',
    'Time from the first SYN sent to the connection established, for connects that succeeded.',
    read,
    'latency_ns',
  );
}
