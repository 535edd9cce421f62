// SPDX-License-Identifier: Apache-2.0
// What the socket redirect bypassed, read from its BPF maps at scrape time:
// its counters as a table over redirect_stats (bpf/sock-redirect.h), and the
// gauges of its state.
//   bpfnet_redirect_bytes_total{family="ipv4"} 8388608
//   bpfnet_redirect_fallbacks_total{family="ipv4",reason="peer_missing"} 3
import type { Registry } from 'prom-client';
import { CollectedGauge, type Sample } from '../metrics/collected';
import type { ScrapeFailures } from '../metrics/validate';
import { perScrape } from '../metrics/per-scrape';
import { registerTable } from '../metrics/table';
import { FALLBACK_REASONS, REDIRECT_FAMILIES, type SockRedirect } from './sock-redirect';

export function registerRedirectMetrics(redirect: () => SockRedirect | undefined, registry: Registry, failures: ScrapeFailures): void {
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
  registerTable(
    {
      map: () => redirect()?.bound().map('redirect_stats'),
      value: () => redirect()!.bound().struct('redirect_stats'),
      index: () => [{ label: 'family', values: REDIRECT_FAMILIES }],
      metrics: [
        {
          name: 'bpfnet_redirect_connections_total',
          help: 'TCP connections whose two ends were both found on this host and paired: their messages skip the TCP/IP stack.',
          type: 'counter',
          labels: ['family'],
          value: { u64: 'connections' },
        },
        {
          name: 'bpfnet_redirect_messages_total',
          help: 'Messages (the chunks sendmsg() hands to sk_msg) delivered straight to the peer socket.',
          type: 'counter',
          labels: ['family'],
          value: { u64: 'messages' },
        },
        {
          name: 'bpfnet_redirect_bytes_total',
          help: 'Payload bytes delivered straight to the peer socket, skipping the TCP/IP stack.',
          type: 'counter',
          labels: ['family'],
          value: { u64: 'bytes' },
        },
        {
          name: 'bpfnet_redirect_fallbacks_total',
          help: "Messages of sockets in the sockhash that took the normal stack: peer_missing (no paired peer), redirect_failed (the kernel refused), policy (redirect paused), stack_used (bytes the socket sent through the stack are not all read yet, so redirecting could reorder), receiver_full (its reader is as far behind as the stack would let it be: the stack takes over and holds the sender back), memory_pressure (TCP memory of the host or of the reader's memory cgroup is under pressure).",
          type: 'counter',
          labels: ['family', 'reason'],
          value: { array: 'fallbacks', label: 'reason', values: FALLBACK_REASONS },
        },
        {
          name: 'bpfnet_redirect_map_full_total',
          help: 'Sockets left on the normal stack because the redirect sockhash was full.',
          type: 'counter',
          labels: [], // both families together
          value: { u64: 'map_full' },
        },
      ],
    },
    registry,
    failures,
  );
}
