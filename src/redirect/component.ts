// SPDX-License-Identifier: Apache-2.0
// The socket redirect as a component: asked for with --redirect (or the
// redirect command), not --probes; attached to its cgroup or not at all, since
// a half-attached redirect is no use: a failure stops the exporter.
import { SOCK_REDIRECT } from '../generated/sock-redirect';
import type { Component } from '../component';
import type { RedirectOptions } from '../options';
import { EnvironmentError } from '../errors';
import { CAPABILITIES, effectiveCapabilities, hasCapability } from '../system';
import { registerRedirectMetrics } from './metrics';
import { assertNotRunning, SockRedirect } from './sock-redirect';

export const REDIRECT_COMPONENT: Component<RedirectOptions> = {
  name: 'redirect',
  probes: [],
  binding: SOCK_REDIRECT,
  select: (o) => o.redirect,
  preflight(o) {
    // attaching sockops to a cgroup needs CAP_NET_ADMIN besides what loading needs
    const eff = effectiveCapabilities();
    if (!hasCapability(CAPABILITIES.CAP_SYS_ADMIN, eff) && !hasCapability(CAPABILITIES.CAP_NET_ADMIN, eff)) {
      throw new EnvironmentError('not permitted to attach the socket redirect: run as root, or grant CAP_NET_ADMIN besides CAP_BPF and CAP_PERFMON');
    }
    // before the port is bound: a second instance on one cgroup says only why it cannot run
    assertNotRunning(o.cgroup);
  },
  start(ctx) {
    const opts = ctx.options;
    const redirect = SockRedirect.start(opts, ctx.log.child('redirect'));
    // a scrape while the exporter stops finds no redirect rather than a closed one
    registerRedirectMetrics(() => (redirect.stopping ? undefined : redirect), ctx.registry, ctx.failures);
    ctx.log.info('socket redirect attached', { cgroup: opts.cgroup.dir, ports: opts.ports.join(',') || 'all' });
    return redirect;
  },
};
