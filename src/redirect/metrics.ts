// SPDX-License-Identifier: Apache-2.0
// What the socket redirect bypassed, read from its BPF maps at scrape time.
//   bpfnet_redirect_bytes_total{family="ipv4"} 8388608
//   bpfnet_redirect_fallbacks_total{family="ipv4",reason="peer_missing"} 3
import type { Registry } from 'prom-client';
import { CollectedCounter, CollectedGauge, type Sample } from '../metrics/collected';
import type { ScrapeFailures } from '../metrics/validate';
import { perScrape } from '../metrics/per-cpu';
import { FALLBACK_REASONS, REDIRECT_FAMILIES, type RedirectStats, type SockRedirect } from './sock-redirect';

export function registerRedirectMetrics(redirect: () => SockRedirect | undefined, registry: Registry, failures: ScrapeFailures): void {
  const stats = perScrape((): RedirectStats[] => redirect()?.readStats() ?? []);
  const byFamily = (field: 'connections' | 'messages' | 'bytes') => (): Sample[] =>
    stats().map((s, f) => ({ labels: { family: REDIRECT_FAMILIES[f]! }, value: s[field] }));
  const common = { registry, failures };

  new CollectedGauge({
    ...common,
    name: 'bpfnet_redirect_enabled',
    help: 'Whether the socket redirect is attached and redirecting (1) or not (0).',
    labelNames: [],
    collect: () => [{ labels: {}, value: redirect()?.enabled ? 1 : 0 }],
  });
  new CollectedGauge({
    ...common,
    name: 'bpfnet_redirect_sockets',
    help: 'TCP sockets in the redirect sockhash now: paired sockets, and connecting sockets still waiting for their peer.',
    labelNames: ['family'],
    collect: () => {
      const r = redirect();
      return r ? r.countSockets().map((value, f) => ({ labels: { family: REDIRECT_FAMILIES[f]! }, value })) : [];
    },
  });
  const queued = perScrape(() => redirect()?.readQueued());
  const byFamilyQueued = (field: 'bytes' | 'max') => (): Sample[] => {
    const q = queued();
    return q ? q[field].map((value, f) => ({ labels: { family: REDIRECT_FAMILIES[f]! }, value })) : [];
  };
  new CollectedGauge({
    ...common,
    name: 'bpfnet_redirect_queued_bytes',
    help: 'Bytes redirected to sockets of the sockhash that their readers have not read yet, over all sockets. A sender stays at most about its peer\'s receive buffer plus its own send buffer ahead before the stack takes over (reason="receiver_full").',
    labelNames: ['family'],
    collect: byFamilyQueued('bytes'),
  });
  new CollectedGauge({
    ...common,
    name: 'bpfnet_redirect_queued_bytes_max',
    help: 'The most redirected bytes one socket of the sockhash holds unread now: its reader is the slowest.',
    labelNames: ['family'],
    collect: byFamilyQueued('max'),
  });
  new CollectedCounter({
    ...common,
    name: 'bpfnet_redirect_connections_total',
    help: 'TCP connections whose two ends were both found on this host and paired: their messages skip the TCP/IP stack.',
    labelNames: ['family'],
    collect: byFamily('connections'),
  });
  new CollectedCounter({
    ...common,
    name: 'bpfnet_redirect_messages_total',
    help: 'Messages (the chunks sendmsg() hands to sk_msg) delivered straight to the peer socket.',
    labelNames: ['family'],
    collect: byFamily('messages'),
  });
  new CollectedCounter({
    ...common,
    name: 'bpfnet_redirect_bytes_total',
    help: 'Payload bytes delivered straight to the peer socket, skipping the TCP/IP stack.',
    labelNames: ['family'],
    collect: byFamily('bytes'),
  });
  new CollectedCounter({
    ...common,
    name: 'bpfnet_redirect_fallbacks_total',
    help: "Messages of sockets in the sockhash that took the normal stack: peer_missing (no paired peer), redirect_failed (the kernel refused), policy (redirect paused), stack_used (bytes the socket sent through the stack are not all read yet, so redirecting could reorder), receiver_full (its reader is as far behind as the stack would let it be: the stack takes over and holds the sender back), memory_pressure (TCP memory of the host or of the reader's memory cgroup is under pressure).",
    labelNames: ['family', 'reason'],
    collect: () =>
      stats().flatMap((s, f) => FALLBACK_REASONS.map((reason, i) => ({ labels: { family: REDIRECT_FAMILIES[f]!, reason }, value: s.fallbacks[i]! }))),
  });
  new CollectedCounter({
    ...common,
    name: 'bpfnet_redirect_map_full_total',
    help: 'Sockets left on the normal stack because the redirect sockhash was full.',
    labelNames: [],
    collect: () => {
      const all = stats();
      return all.length ? [{ labels: {}, value: all.reduce((a, s) => a + s.mapFull, 0) }] : [];
    },
  });
}
