// SPDX-License-Identifier: Apache-2.0
// The probes this exporter has, by the names --probes takes.
import { CollectedCounter, CollectedGauge } from '../metrics/collected';
import type { ProbeContext, Component, RunningComponent } from '../component';
import { registerAcceptMetrics } from './tcp-accept';
import { registerCloseMetrics } from './tcp-close';
import { registerConnectMetrics } from './tcp-connect';
import { NETSUBSYS_COMPONENT } from './netsubsys';
import { registerSidecarMetrics } from './sidecar';
import { TcpLifecycle } from './tcp-lifecycle';
import { TCP_PROBES, type TcpOptions } from '../options';
import { REDIRECT_COMPONENT } from '../redirect/component';

const tcpLifecycle: Component<TcpOptions> = {
  name: 'tcp',
  probes: TCP_PROBES,
  select: (o) => o.tcp,
  start(exporterCtx: ProbeContext<TcpOptions>): RunningComponent {
    const ctx = { ...exporterCtx, log: exporterCtx.log.child('probes') };
    const requested = ctx.options.probes;
    const tcp = new TcpLifecycle(requested, ctx);
    if (!tcp.loaded) return tcp;
    if (requested.includes('connect')) registerConnectMetrics(tcp, ctx);
    if (requested.includes('accept')) registerAcceptMetrics(tcp, ctx);
    if (requested.includes('close')) registerCloseMetrics(tcp, ctx);
    new CollectedCounter({
      name: 'bpfnet_tcp_untracked_connections_total',
      help: 'TCP connections left unmeasured because the in-kernel connection table and its overflow map were full.',
      labelNames: [],
      registry: ctx.registry,
      failures: ctx.failures,
      collect: () => [{ labels: {}, value: tcp.readUntracked() }],
    });
    new CollectedGauge({
      name: 'bpfnet_tcp_connection_table_overflow',
      help: 'Open connections kept in the overflow hash map because their set of the in-kernel connection table was full (a little is normal; much means more cost per connection).',
      labelNames: [],
      registry: ctx.registry,
      failures: ctx.failures,
      collect: () => [{ labels: {}, value: tcp.readOverflowed() }],
    });
    if (ctx.options.sidecars.length) registerSidecarMetrics((n) => tcp.readArray('sidecar_stats', n), ctx.options.sidecars, ctx);
    if (ctx.events) {
      new CollectedCounter({
        name: 'bpfnet_events_lost_total',
        help: 'Events the kernel could not hand to the exporter because its ring buffer was full, by probe (connect: failed connects; close: closed connections): their spans are missing.',
        labelNames: ['probe'],
        registry: ctx.registry,
        failures: ctx.failures,
        collect: () => {
          const lost = tcp.readEventsLost();
          return [
            { labels: { probe: 'connect' }, value: lost.connect },
            { labels: { probe: 'close' }, value: lost.close },
          ];
        },
      });
    }
    return tcp;
  },
};

/** Every component, in the order they start (and the reverse of the one they stop in). */
export const COMPONENTS: readonly Component[] = [tcpLifecycle, NETSUBSYS_COMPONENT, REDIRECT_COMPONENT];
