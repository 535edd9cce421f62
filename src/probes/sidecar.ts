// SPDX-License-Identifier: Apache-2.0
// sidecar: where a request's time goes between a sidecar proxy and its
// application. For each connection a named proxy accepts, the kernel times
// (a) the proxy's accept to its connect upstream, on the thread that serves
// the connection (the one that accepted it or last read from it), and (b)
// that connect to the application's accept of it, matched by four-tuple;
// inbound connections the proxy forwards over an older upstream connection
// are counted instead (bpf/tcp-lifecycle.bpf.c, sidecar_*).
//   bpfnet_sidecar_forward_seconds_bucket{sidecar="envoy",le="0.000262144"} 41
import { UpdateFlags, type BpfObject } from '../libbpf';
import { TCP_LIFECYCLE } from '../generated/tcp-lifecycle';
import { Log2Histogram } from '../metrics/log2-histogram';
import { CollectedCounter } from '../metrics/collected';
import type { ProbeContext } from '../component';
import type { Sidecar, TcpOptions } from '../options';
import { perScrape, type PerCpuValue } from '../metrics/per-cpu';
import type { FieldName } from '../libbpf/binding';

const COMM_LEN = TCP_LIFECYCLE.structs.accept_key.fields.comm.length;

/** Writes the sidecars into the loaded object's maps. */
export function applySidecars(obj: BpfObject<typeof TCP_LIFECYCLE>, sidecars: readonly Sidecar[]): void {
  const index = Buffer.alloc(4);
  sidecars.forEach((s, i) => {
    index.writeUInt32LE(i);
    for (const comm of s.comms) {
      const key = Buffer.alloc(COMM_LEN);
      key.write(comm);
      obj.map('sidecar_comms').update(key, index, UpdateFlags.Any);
    }
    for (const pid of s.pids) {
      const key = Buffer.alloc(4);
      key.writeUInt32LE(pid);
      obj.map('sidecar_pids').update(key, index, UpdateFlags.Any);
    }
  });
}

/** sidecar_stats, the first entry of each sidecar, read from the TCP object */
export type SidecarStats = PerCpuValue<FieldName<typeof TCP_LIFECYCLE, 'sidecar_stats'>>;

export function registerSidecarMetrics(readStats: (count: number) => SidecarStats[], sidecars: readonly Sidecar[], ctx: ProbeContext<TcpOptions>): void {
  const { registry, failures } = ctx;
  const read = perScrape(() => readStats(sidecars.length));
  const byName = { labelNames: ['sidecar'], minExp: 10, maxExp: 37, scale: 1e9, registry, failures };
  new Log2Histogram({
    ...byName,
    name: 'bpfnet_sidecar_forward_seconds',
    help: "From the sidecar's accept() of an inbound connection to its connect() upstream for it.",
    collect: () => read().map((v, i) => v.hist('forward_ns', { sidecar: sidecars[i]!.name })),
  });
  new Log2Histogram({
    ...byName,
    name: 'bpfnet_sidecar_upstream_connect_seconds',
    help: "From the sidecar's connect() upstream to the application's accept() of that connection.",
    collect: () => read().map((v, i) => v.hist('upstream_ns', { sidecar: sidecars[i]!.name })),
  });
  new CollectedCounter({
    name: 'bpfnet_sidecar_reused_connections_total',
    help: 'Inbound connections the sidecar forwarded over an upstream connection it had open before (no connect of their own, so no forward or upstream timing for them).',
    labelNames: ['sidecar'],
    registry,
    failures,
    collect: () => read().map((v, i) => ({ labels: { sidecar: sidecars[i]!.name }, value: v.u64('reused') })),
  });
}
