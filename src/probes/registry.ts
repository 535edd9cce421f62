// SPDX-License-Identifier: Apache-2.0
// The probes this exporter has, by the names --probes takes.
import { TCP_LIFECYCLE } from '../generated/tcp-lifecycle';
import type { ProbeContext, Component, RunningComponent } from '../component';
import { NETSTACK_COMPONENT } from './netstack';
import { TcpLifecycle } from './tcp-lifecycle';
import { registerTcpMetrics } from './tcp-metrics';
import { TCP_PROBES, type TcpOptions } from '../options';
import { REDIRECT_COMPONENT } from '../redirect/component';

const tcpLifecycle: Component<TcpOptions> = {
  name: 'tcp',
  probes: TCP_PROBES,
  binding: TCP_LIFECYCLE,
  select: (o) => o.tcp,
  start(exporterCtx: ProbeContext<TcpOptions>): RunningComponent {
    const ctx = { ...exporterCtx, log: exporterCtx.log.child('probes') };
    const requested = ctx.options.probes;
    const tcp = new TcpLifecycle(requested, ctx);
    if (tcp.loaded) registerTcpMetrics(tcp, ctx);
    return tcp;
  },
};

/** Every component, in the order they start (and the reverse of the one they stop in). */
export const COMPONENTS: readonly Component[] = [tcpLifecycle, NETSTACK_COMPONENT, REDIRECT_COMPONENT];
