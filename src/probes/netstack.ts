// SPDX-License-Identifier: Apache-2.0
// netstack: time packets spend between points of the kernel's network stack,
// by stage and interface; drops by the kernel's reason; TCP resets and
// retransmitted segments (bpf/netstack.bpf.c, tp_btf on net:*, skb:*, tcp:*
// tracepoints; BTF, kernel 5.17+ for drop reasons). All of it aggregated in
// the kernel and read at scrape time.
//   bpfnet_netstack_latency_seconds_bucket{direction="tx",stage="qdisc",ifname="eth0",netns="4026531840",le="0.016777216"} 12
//   bpfnet_skb_drops_total{reason="netfilter_drop",ifname="eth0",netns="4026531840"} 3
import { BpfError, BpfObject, detailOf, Kind, summaryOf, type BpfLink, type BpfProgram, vmlinuxBtf } from '../libbpf';
import type { ProgramName } from '../libbpf/binding';
import type { NetstackOptions } from '../options';
import { NETSTACK } from '../generated/netstack';
import { applyFilters } from '../filters';
import { bpfObjectPath } from '../paths';
import { registerTable, U64_VALUE } from '../metrics/table';
import { destroyLinks, type ProbeContext, type Component, type ProbeStatus, type RunningComponent } from '../component';

type Binding = typeof NETSTACK;

/** Label values, from the C enums (bpf/netstack.h, bpf/include/bpfnet.h). */
const { family: FAMILY, ns_direction: DIRECTION, ns_stage: STAGE, ns_error: MAP_ERROR } = NETSTACK.enums;

/** Each program and the tracepoint it needs; the stages of a missing one are
 * not measured, the rest run. */
const PROGRAMS: Record<ProgramName<Binding>, string> = {
  rx_netif_rx: 'netif_rx',
  rx_gro_receive: 'napi_gro_receive_entry',
  rx_receive_skb: 'netif_receive_skb',
  rx_tcp_probe: 'tcp_probe',
  rx_read: 'skb_copy_datagram_iovec',
  tx_tcp_sendmsg: 'tcp_sendmsg_locked',
  tx_dev_queue: 'net_dev_queue',
  tx_qdisc_enqueue: 'qdisc_enqueue',
  tx_start_xmit: 'net_dev_start_xmit',
  tx_dev_xmit: 'net_dev_xmit',
  drop_kfree_skb: 'kfree_skb',
  tcp_reset_sent: 'tcp_send_reset',
  tcp_reset_recv: 'tcp_receive_reset',
  tcp_retransmit: 'tcp_retransmit_skb',
};

/** The kernel's drop reasons by value, lower-case without their prefix
 * (SKB_DROP_REASON_NETFILTER_DROP: netfilter_drop), from its BTF. */
export function dropReasonNames(): Map<number, string> {
  const names = new Map<number, string>();
  let values: Map<string, bigint>;
  try {
    values = vmlinuxBtf().enumValues('skb_drop_reason');
  } catch {
    return names; // a kernel without drop reasons: numbers it is
  }
  for (const [name, value] of values) {
    if (name.startsWith('SKB_DROP_REASON_') && name !== 'SKB_DROP_REASON_MAX') {
      names.set(Number(value), name.slice('SKB_DROP_REASON_'.length).toLowerCase());
    }
  }
  return names;
}

/** The latest of a per-CPU u64 field (a kernel monotonic time). */
function latest(value: Buffer, stride: number, offset: number): bigint {
  let max = 0n;
  for (let base = 0; base < value.length; base += stride) {
    const v = value.readBigUInt64LE(base + offset);
    if (v > max) max = v;
  }
  return max;
}

export class Netstack implements RunningComponent {
  readonly status = new Map<string, ProbeStatus>();
  private object: BpfObject<Binding> | undefined;
  private readonly links: BpfLink[] = [];
  private sweeper: NodeJS.Timeout | undefined;

  constructor(private readonly ctx: ProbeContext<NetstackOptions>) {
    let obj: BpfObject<Binding> | undefined;
    let phase = 'load netstack';
    try {
      obj = BpfObject.open(bpfObjectPath(NETSTACK.file), NETSTACK);
      const btf = vmlinuxBtf();
      const missing = (Object.entries(PROGRAMS) as [ProgramName<Binding>, string][]).filter(([, tp]) => !btf.find(`btf_trace_${tp}`, Kind.Typedef));
      for (const [prog] of missing) obj.program(prog).autoload = false;
      // without qdisc_enqueue, a packet a qdisc holds cannot be told from one
      // sent at once: every transmitted packet then goes to the hash map
      obj.setConstants({ tx_always_hashed: missing.some(([prog]) => prog === 'tx_qdisc_enqueue') });
      if (missing.length)
        ctx.log.warn('tracepoints missing on this kernel; their stages are not measured', { tracepoints: missing.map(([, tp]) => tp).join(',') });
      obj.load();
      applyFilters(obj, ctx.filters);
      for (const prog of obj.programs().filter((p) => p.autoload)) {
        phase = `attach ${prog.name}`;
        this.links.push(prog.attach());
      }
    } catch (err) {
      this.close();
      obj?.close();
      const why = summaryOf(err);
      this.status.set('netstack', { up: false, reason: `${phase}: ${why}` });
      ctx.log.error('cannot start the netstack probe', { err: `${phase}: ${why}` });
      if (err instanceof BpfError) ctx.log.debug('why the netstack probe cannot start', { err: detailOf(err) });
      return;
    }
    this.object = obj;
    this.status.set('netstack', { up: true });
    const ttl = ctx.options.seriesTtl;
    if (ttl > 0) {
      this.sweeper = setInterval(() => this.sweep(ttl), Math.min(ttl / 2, 60) * 1000);
      this.sweeper.unref();
    }
  }

  /** Deletes the series that had no sample for ttl seconds: those of
   * interfaces that are gone (a pod's veth), so that new ones find room. */
  sweep(ttl: number): number {
    const obj = this.object;
    if (!obj) return 0;
    const oldest = process.hrtime.bigint() - BigInt(Math.round(ttl * 1e9)); // CLOCK_MONOTONIC, as bpf_ktime_get_ns
    let deleted = 0;
    try {
      for (const [mapName, at] of [
        ['netstack_latency', obj.struct('stage_stats').offset('last_ns')],
        ['netstack_drops', obj.struct('drop_stats').offset('last_ns')],
      ] as const) {
        const map = obj.map(mapName);
        for (const { key, value } of map.entries()) {
          if (latest(value, map.stride, at) < oldest && map.delete(key)) deleted++;
        }
      }
    } catch (err) {
      this.ctx.log.warn('cannot forget idle netstack series', { err: (err as Error).message });
    }
    if (deleted) this.ctx.log.debug('forgot idle netstack series', { series: deleted });
    return deleted;
  }

  get loaded(): boolean {
    return this.object !== undefined;
  }

  programs(): BpfProgram[] {
    return this.object ? this.object.programs().filter((p) => p.autoload) : [];
  }

  objects(): BpfObject<Binding>[] {
    return this.object ? [this.object] : [];
  }

  close(): void {
    clearInterval(this.sweeper);
    destroyLinks(this.links, this.ctx.log);
    this.object?.close();
    this.object = undefined;
  }

  /** The loaded object, for the metrics to read its maps. */
  bound(): BpfObject<Binding> {
    if (!this.object) throw new Error('the netstack object is not loaded');
    return this.object;
  }
}

/** The metrics, as tables over the object's maps (bpf/netstack.h). */
function registerMetrics(probe: Netstack, ctx: ProbeContext<NetstackOptions>): void {
  const { registry, failures } = ctx;
  const obj = () => probe.bound();
  const reasons = dropReasonNames();
  const where = 'netns is the inode number of the network namespace (ls -Li /proc/PID/ns/net)';
  const netns = { field: 'netns', type: 'u32' } as const;
  registerTable(
    {
      map: () => obj().map('netstack_latency'),
      value: () => obj().struct('stage_stats'),
      key: {
        layout: () => obj().struct('stage_key'),
        labels: {
          direction: { field: 'direction', type: 'u8', format: (d) => DIRECTION.labels[d as number] ?? 'unknown' },
          stage: { field: 'stage', type: 'u8', format: (s) => STAGE.labels[s as number] ?? 'unknown' },
          netns,
        },
      },
      valueLabels: { ifname: 'ifname' },
      metrics: [
        {
          name: 'bpfnet_netstack_latency_seconds',
          help: `Time packets spent in a stage of the kernel network stack, on the interface where the stage began; ${where}. Stages: rx device_to_stack (driver to stack entry), stack_to_socket (to its TCP socket), socket_to_read (socket queue to the application's first read), stack_to_read (TCP past its own FIN: stack entry to first read); tx send_to_qdisc (TCP send call to the device queue), qdisc (device queue to driver start), driver (driver start to done).`,
          type: 'histogram',
          labels: ['direction', 'stage', 'ifname', 'netns'],
          value: { hist: 'ns', minExp: 8, maxExp: 33, scale: 1e9 }, // 256 ns to 8.6 s
        },
      ],
    },
    registry,
    failures,
  );
  registerTable(
    {
      map: () => obj().map('netstack_drops'),
      value: () => obj().struct('drop_stats'),
      key: {
        layout: () => obj().struct('drop_key'),
        labels: { reason: { field: 'reason', type: 'u32', format: (r) => reasons.get(r as number) ?? `reason_${r}` }, netns },
      },
      valueLabels: { ifname: 'ifname' },
      metrics: [
        {
          name: 'bpfnet_skb_drops_total',
          help: `Packets the kernel freed as dropped (kfree_skb), by the kernel's drop reason and the interface they were on (empty: none); ${where}.`,
          type: 'counter',
          labels: ['reason', 'ifname', 'netns'],
          value: { u64: 'packets' },
        },
      ],
    },
    registry,
    failures,
  );
  registerTable(
    {
      map: () => obj().map('netstack_tcp'),
      value: () => obj().struct('tcp_event_stats'),
      index: () => [{ label: 'family', values: FAMILY.labels }],
      metrics: [
        {
          name: 'bpfnet_tcp_resets_total',
          help: 'TCP resets sent (tx) and received (rx).',
          type: 'counter',
          labels: ['family', 'direction'],
          value: { fields: { rx: 'resets_received', tx: 'resets_sent' }, label: 'direction' },
        },
        {
          name: 'bpfnet_tcp_retransmitted_segments_total',
          help: 'TCP segments retransmitted (as the kernel counts RetransSegs).',
          type: 'counter',
          labels: ['family'],
          value: { u64: 'retransmitted_segments' },
        },
      ],
    },
    registry,
    failures,
  );
  registerTable(
    {
      map: () => obj().map('netstack_errors'),
      value: () => U64_VALUE,
      index: () => [{ label: 'map', values: MAP_ERROR.labels }],
      metrics: [
        {
          name: 'bpfnet_netstack_map_full_total',
          help: 'Stage samples (netstack_latency) or drops (netstack_drops) not counted because the map of their series was full.',
          type: 'counter',
          labels: ['map'],
          value: { u64: 'value' },
        },
      ],
    },
    registry,
    failures,
  );
}

export const NETSTACK_COMPONENT: Component<NetstackOptions> = {
  name: 'netstack',
  probes: ['netstack'],
  binding: NETSTACK,
  select: (o) => o.netstack,
  start(exporterCtx: ProbeContext<NetstackOptions>): RunningComponent {
    const ctx = { ...exporterCtx, log: exporterCtx.log.child('probes') };
    const probe = new Netstack(ctx);
    if (probe.loaded) registerMetrics(probe, ctx);
    return probe;
  },
};
