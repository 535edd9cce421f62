// SPDX-License-Identifier: Apache-2.0
// The TCP lifecycle object's metrics, as tables over its maps
// (bpf/tcp-lifecycle.h): which map, how an entry becomes labels, which field
// each metric reads. Adding a label is a C edit to the map's key or index
// and one entry here. The maps are keyed by the socket owner's cgroup,
// whose workload labels src/workload/ finds.
//   bpfnet_tcp_connects_total{family="ipv4",result="refused",namespace="shop",
//     pod="cart-7d9f",container="app",cgroup="",peer_port="5432",
//     peer_namespace="data",peer_pod="db-0"} 3
import type { ProbeContext } from '../component';
import { TCP_LIFECYCLE } from '../generated/tcp-lifecycle';
import { CollectedCounter, CollectedGauge } from '../metrics/collected';
import { SeriesLimit } from '../metrics/series-limit';
import { registerTable, type IndexDimension, type KeyReader } from '../metrics/table';
import type { TcpOptions } from '../options';
import { otherLabels, ownerLabels, peerLabels } from '../workload/labels';
import { NO_WORKLOAD, RETIRE_AFTER_MS } from '../workload/resolver';
import type { TcpLifecycle } from './tcp-lifecycle';

const FAMILY: IndexDimension = { label: 'family', values: TCP_LIFECYCLE.enums.family.labels };
const ROLE: IndexDimension = { label: 'role', values: TCP_LIFECYCLE.enums.role.labels };
const LATENCY = { minExp: 10, maxExp: 37, scale: 1e9 }; // 1.024 us to 137 s
const ERRORS = TCP_LIFECYCLE.enums.lifecycle_error.values;

/** Registers the metrics of the requested probes, read from the loaded object. */
export function registerTcpMetrics(tcp: TcpLifecycle, ctx: ProbeContext<TcpOptions>): void {
  const { registry, failures, options, log } = ctx;
  const obj = () => tcp.bound();
  const keys = tcp.keys;
  const owner = keys.owner;
  const connectLabels = keys.connect;
  const limit = new SeriesLimit(options.attribution.maxSeries, connectLabels, (metric) =>
    log.warn('series limit reached: further label sets are folded into workload labels "other"', { metric, max: options.attribution.maxSeries }),
  );
  const workloads = tcp.workloads;
  const family = (k: KeyReader<string>) => FAMILY.values[k.u('family', 1)] ?? 'unknown';
  const ownerOf = (id: bigint) => ownerLabels(workloads?.workload(id) ?? NO_WORKLOAD, owner);
  // entries of a cgroup deleted a while ago
  const retire = (k: KeyReader<string>) => {
    const id = k.u64('cgroup');
    const since = id === 0n ? undefined : workloads?.goneSince(id);
    return since !== undefined && Date.now() - since > RETIRE_AFTER_MS;
  };
  // what the labels derived from a key come from
  const version = () => (workloads?.version ?? 0) + (tcp.peers?.version ?? 0);
  const workloadHelp = 'namespace, pod and container: of the socket owner\'s cgroup, in a pod; cgroup: its path, outside pods; "other": beyond --max-series';
  if (options.probes.includes('connect')) {
    registerTable(
      {
        map: () => obj().map('tcp_connects'),
        value: () => obj().struct('connect_stats'),
        key: {
          layout: () => obj().struct('connect_key'),
          labels: {},
          derive: (k) => {
            const id = k.u64('cgroup');
            const port = k.u('peer_port', 2);
            const peer = k.u('peer', 4);
            const labels = { family: family(k) };
            if ((keys.cgroup || keys.peerPort || keys.peer) && id === 0n && port === 0 && peer === 0) return { ...labels, ...otherLabels(connectLabels) };
            return {
              ...labels,
              ...ownerOf(id),
              ...(keys.peerPort ? { peer_port: String(port) } : {}),
              ...peerLabels(tcp.peers?.pod(peer), connectLabels),
            };
          },
          retire,
          version,
        },
        limit,
        metrics: [
          {
            name: 'bpfnet_tcp_connects_total',
            help: `TCP active opens (connect) by outcome: established, refused (RST), timeout (no answer to SYNs), aborted (closed by the application or failed otherwise before established); ${workloadHelp}; peer_port: the remote port; peer_namespace, peer_pod: the peer's pod, when on this node.`,
            type: 'counter',
            labels: ['family', 'result', ...connectLabels],
            value: { array: 'results', label: 'result', values: TCP_LIFECYCLE.enums.connect_result.labels },
          },
          {
            name: 'bpfnet_tcp_connect_duration_seconds',
            help: 'Time from the first SYN sent to the connection established, for connects that succeeded.',
            type: 'histogram',
            labels: ['family', ...connectLabels],
            value: { hist: 'latency_ns', ...LATENCY },
          },
        ],
      },
      registry,
      failures,
    );
  }
  if (options.probes.includes('accept')) {
    registerTable(
      {
        map: () => obj().map('tcp_accepts'),
        value: () => obj().struct('accept_stats'),
        key: {
          layout: () => obj().struct('accept_key'),
          labels: {
            // accepts beyond the limit are counted under port 0
            port: { field: 'port', type: 'u16', format: (p) => (p === 0 ? 'other' : String(p)) },
            comm: { field: 'comm', type: 'string' },
          },
          derive: (k) => {
            const id = k.u64('cgroup');
            const labels = { family: family(k) };
            return k.u('port', 2) === 0 ? { ...labels, ...otherLabels(owner) } : { ...labels, ...ownerOf(id) };
          },
          retire,
          version,
        },
        limit,
        metrics: [
          {
            name: 'bpfnet_tcp_accepts_total',
            help: `TCP passive opens that reached established, by local (listening) port and the command of the process that accepted them; counted when accept() returns them, or at close with comm="" if never accepted. port="other" holds what goes beyond ${options.acceptPortLimit} label sets; ${workloadHelp}.`,
            type: 'counter',
            labels: ['family', 'port', 'comm', ...owner],
            value: { u64: 'accepted' },
            // the "other" entries exist from the start; shown once they count
            keep: (labels, value) => labels.port !== 'other' || value > 0,
          },
          {
            name: 'bpfnet_tcp_accept_handshake_duration_seconds',
            help: "Time from the SYN-ACK sent to the handshake-completing ACK received (the kernel's own SYN-ACK RTT sample; from the first SYN-ACK when it was retransmitted).",
            type: 'histogram',
            labels: ['family', ...owner],
            value: { hist: 'handshake_ns', ...LATENCY },
          },
          {
            name: 'bpfnet_tcp_accept_queue_duration_seconds',
            help: 'Time an established connection waited in the accept queue until accept() returned it.',
            type: 'histogram',
            labels: ['family', ...owner],
            value: { hist: 'queue_ns', ...LATENCY },
          },
        ],
      },
      registry,
      failures,
    );
  }
  if (options.probes.includes('close')) {
    const roles = 'role is client for active opens, server for passive opens';
    const byConnection = ['family', 'role', ...owner];
    const bytes = { minExp: 0, maxExp: 36, scale: 1 }; // to 64 GiB
    registerTable(
      {
        map: () => obj().map('tcp_closes'),
        value: () => obj().struct('close_stats'),
        key: {
          layout: () => obj().struct('close_key'),
          labels: { role: { field: 'role', type: 'u8', format: (r) => ROLE.values[r as number] ?? 'unknown' } },
          derive: (k) => {
            const id = k.u64('cgroup');
            const labels = { family: family(k) };
            return keys.cgroup && id === 0n ? { ...labels, ...otherLabels(owner) } : { ...labels, ...ownerOf(id) };
          },
          retire,
          version,
        },
        limit,
        metrics: [
          {
            name: 'bpfnet_tcp_closes_total',
            help: `TCP connections closed after being established; ${roles}; ${workloadHelp}.`,
            type: 'counter',
            labels: byConnection,
            value: { histCount: 'lifetime_ns' },
          },
          {
            name: 'bpfnet_tcp_sent_bytes_total',
            help: `Payload bytes sent and acknowledged by the peer, over closed connections; ${roles}.`,
            type: 'counter',
            labels: byConnection,
            value: { histSum: 'sent_bytes' },
          },
          {
            name: 'bpfnet_tcp_received_bytes_total',
            help: `Payload bytes received in order, over closed connections; ${roles}.`,
            type: 'counter',
            labels: byConnection,
            value: { histSum: 'received_bytes' },
          },
          {
            name: 'bpfnet_tcp_retransmits_total',
            help: `Segments retransmitted, over closed connections (SYN-ACK retransmissions included); ${roles}.`,
            type: 'counter',
            labels: byConnection,
            value: { u64: 'retransmits' },
          },
          {
            name: 'bpfnet_tcp_connection_duration_seconds',
            help: 'Connection lifetime, from established to closed.',
            type: 'histogram',
            labels: byConnection,
            value: { hist: 'lifetime_ns', minExp: 10, maxExp: 45, scale: 1e9 }, // to 9.8 h
          },
          {
            name: 'bpfnet_tcp_connection_sent_bytes',
            help: 'Payload bytes a connection sent (acknowledged by the peer) over its life.',
            type: 'histogram',
            labels: byConnection,
            value: { hist: 'sent_bytes', ...bytes },
          },
          {
            name: 'bpfnet_tcp_connection_received_bytes',
            help: 'Payload bytes a connection received over its life.',
            type: 'histogram',
            labels: byConnection,
            value: { hist: 'received_bytes', ...bytes },
          },
          {
            name: 'bpfnet_tcp_srtt_seconds',
            help: 'Smoothed round-trip time of connections when they closed.',
            type: 'histogram',
            labels: ['family', ...owner], // both roles together
            value: { hist: 'srtt_ns', minExp: 10, maxExp: 33, scale: 1e9 }, // to 8.6 s
          },
        ],
      },
      registry,
      failures,
    );
  }
  new CollectedCounter({
    name: 'bpfnet_tcp_untracked_connections_total',
    help: 'TCP connections left unmeasured because the in-kernel connection table and its overflow map were full.',
    labelNames: [],
    registry,
    failures,
    collect: () => [{ labels: {}, value: obj().map('tcp_lifecycle_errors').counterAt(ERRORS.ERR_CONN_TABLE_FULL) }],
  });
  new CollectedCounter({
    name: 'bpfnet_series_folded_total',
    help: 'Label sets of a metric folded into the series whose workload labels say "other", beyond --max-series.',
    labelNames: ['metric'],
    registry,
    failures,
    collect: () => limit.foldedCounts().map(({ metric, count }) => ({ labels: { metric }, value: count })),
  });
  new CollectedCounter({
    name: 'bpfnet_tcp_attribution_overflow_total',
    help: 'Events the kernel counted under workload labels "other" because its map for them had no room for another key (--max-series keys; accepts: --accept-port-limit), by map.',
    labelNames: ['map'],
    registry,
    failures,
    collect: () => {
      const errors = obj().map('tcp_lifecycle_errors');
      const maps = [
        ['connect', 'tcp_connects', ERRORS.ERR_CONNECTS_FULL],
        ['accept', 'tcp_accepts', ERRORS.ERR_ACCEPTS_FULL],
        ['close', 'tcp_closes', ERRORS.ERR_CLOSES_FULL],
      ] as const;
      return maps.filter(([probe]) => options.probes.includes(probe)).map(([, map, err]) => ({ labels: { map }, value: errors.counterAt(err) }));
    },
  });
  new CollectedGauge({
    name: 'bpfnet_tcp_connection_table_overflow',
    help: 'Open connections kept in the overflow hash map because their set of the in-kernel connection table was full (a little is normal; much means more cost per connection).',
    labelNames: [],
    registry,
    failures,
    collect: () => [{ labels: {}, value: Number(obj().readGlobal('.bss', 'sock_table_overflowed')) }],
  });
  if (options.sidecars.length) {
    const sidecar: IndexDimension = { label: 'sidecar', values: options.sidecars.map((s) => s.name) };
    registerTable(
      {
        map: () => obj().map('sidecar_stats'),
        value: () => obj().struct('sidecar_stats'),
        index: () => [sidecar],
        metrics: [
          {
            name: 'bpfnet_sidecar_forward_seconds',
            help: "From the sidecar's accept() of an inbound connection to its connect() upstream for it.",
            type: 'histogram',
            labels: ['sidecar'],
            value: { hist: 'forward_ns', ...LATENCY },
          },
          {
            name: 'bpfnet_sidecar_upstream_connect_seconds',
            help: "From the sidecar's connect() upstream to the application's accept() of that connection.",
            type: 'histogram',
            labels: ['sidecar'],
            value: { hist: 'upstream_ns', ...LATENCY },
          },
          {
            name: 'bpfnet_sidecar_reused_connections_total',
            help: 'Inbound connections the sidecar forwarded over an upstream connection it had open before (no connect of their own, so no forward or upstream timing for them).',
            type: 'counter',
            labels: ['sidecar'],
            value: { u64: 'reused' },
          },
          {
            name: 'bpfnet_sidecar_unpaired_connections_total',
            help: 'Inbound connections the sidecar accepted and closed with neither a connect upstream nor an older upstream connection found to serve them: with the forwards timed and the reused ones, every inbound connection closed.',
            type: 'counter',
            labels: ['sidecar'],
            value: { u64: 'unpaired' },
          },
        ],
      },
      registry,
      failures,
    );
  }
  if (ctx.events) {
    new CollectedCounter({
      name: 'bpfnet_events_lost_total',
      help: 'Events the kernel could not hand to the exporter because its ring buffer was full, by probe (connect: failed connects; close: closed connections): their spans are missing.',
      labelNames: ['probe'],
      registry,
      failures,
      collect: () => {
        const errors = obj().map('tcp_lifecycle_errors');
        return [
          { labels: { probe: 'connect' }, value: errors.counterAt(ERRORS.ERR_LOST_CONNECT) },
          { labels: { probe: 'close' }, value: errors.counterAt(ERRORS.ERR_LOST_CLOSE) },
        ];
      },
    });
  }
}
