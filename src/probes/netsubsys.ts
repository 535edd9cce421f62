// SPDX-License-Identifier: Apache-2.0
// netsubsys: time packets spend between points of the kernel's network stack,
// by stage and interface; drops by the kernel's reason; TCP resets and
// retransmitted segments (bpf/netsubsys.bpf.c, tp_btf on net:*, skb:*, tcp:*
// tracepoints; BTF, kernel 5.17+ for drop reasons). All of it aggregated in
// the kernel and read at scrape time.
//   bpfnet_netstack_latency_seconds_bucket{direction="tx",stage="qdisc",ifname="eth0",netns="4026531840",le="0.016777216"} 12
//   bpfnet_skb_drops_total{reason="netfilter_drop",ifname="eth0",netns="4026531840"} 3
import { BpfError, BpfObject, Kind, type BpfLink, type BpfProgram, cString, sumPerCpu, vmlinuxBtf } from '../libbpf';
import type { ProgramName } from '../libbpf/binding';
import type { NetsubsysOptions } from '../options';
import { NETSUBSYS } from '../generated/netsubsys';
import { applyFilters } from '../filters';
import { bpfObjectPath } from '../paths';
import { CollectedCounter, type Sample } from '../metrics/collected';
import { Log2Histogram, type Log2Sample } from '../metrics/log2-histogram';
import type { ProbeContext, Component, ProbeStatus, RunningComponent } from '../component';
import { PerCpuValue, perCpuArray, perScrape } from '../metrics/per-cpu';

type Binding = typeof NETSUBSYS;

/** Label values, from the C enums (bpf/netsubsys.h, bpf/include/bpfnet.h). */
const { family: FAMILY, ns_direction: DIRECTION, ns_stage: STAGE, ns_error: MAP_ERROR } = NETSUBSYS.enums;
export const DIRECTIONS = DIRECTION.labels;
export const STAGES = STAGE.labels;

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

/** The interface name kept on whichever CPU created a per-CPU entry. */
function ifnameOf(value: Buffer, stride: number, offset: number, size: number): string {
  for (let base = 0; base < value.length; base += stride) {
    const name = cString(value, base + offset, size);
    if (name) return name;
  }
  return '';
}

export class Netsubsys implements RunningComponent {
  readonly status = new Map<string, ProbeStatus>();
  private object: BpfObject<Binding> | undefined;
  private readonly links: BpfLink[] = [];
  private readonly reasons = dropReasonNames();
  private sweeper: NodeJS.Timeout | undefined;

  constructor(private readonly ctx: ProbeContext<NetsubsysOptions>) {
    let obj: BpfObject<Binding> | undefined;
    let phase = 'load netsubsys';
    try {
      obj = BpfObject.open(bpfObjectPath(NETSUBSYS.file), NETSUBSYS);
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
      const why = err instanceof BpfError ? err.summary() : String((err as Error).message ?? err);
      this.status.set('netsubsys', { up: false, reason: `${phase}: ${why}` });
      ctx.log.error('cannot start the netsubsys probe', { err: `${phase}: ${why}` });
      if (err instanceof BpfError) ctx.log.debug('why the netsubsys probe cannot start', { err: err.detail() });
      return;
    }
    this.object = obj;
    this.status.set('netsubsys', { up: true });
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
      this.ctx.log.warn('cannot forget idle netsubsys series', { err: (err as Error).message });
    }
    if (deleted) this.ctx.log.debug('forgot idle netsubsys series', { series: deleted });
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

  /** Stage histograms, one per (namespace, interface, direction, stage). */
  readLatency(): Log2Sample[] {
    const map = this.live().map('netstack_latency');
    const key = this.live().struct('stage_key');
    const stats = this.live().struct('stage_stats');
    return map.entries().map(({ key: k, value }) => {
      const v = new PerCpuValue(value, map.stride, stats);
      return v.hist('ns', {
        direction: DIRECTIONS[k.readUInt8(key.offset('direction'))] ?? 'unknown',
        stage: STAGES[k.readUInt8(key.offset('stage'))] ?? 'unknown',
        ifname: ifnameOf(value, map.stride, stats.offset('ifname'), stats.length('ifname')),
        netns: String(k.readUInt32LE(key.offset('netns'))),
      });
    });
  }

  /** Dropped packets by (namespace, interface, reason). */
  readDrops(): Sample[] {
    const map = this.live().map('netstack_drops');
    const key = this.live().struct('drop_key');
    const stats = this.live().struct('drop_stats');
    return map.entries().map(({ key: k, value }) => {
      const reason = k.readUInt32LE(key.offset('reason'));
      return {
        labels: {
          reason: this.reasons.get(reason) ?? `reason_${reason}`,
          ifname: ifnameOf(value, map.stride, stats.offset('ifname'), stats.length('ifname')),
          netns: String(k.readUInt32LE(key.offset('netns'))),
        },
        value: sumPerCpu(value, map.stride, stats.offset('packets')),
      };
    });
  }

  /** Resets and retransmissions by family. */
  readTcp() {
    return perCpuArray(this.live().map('netstack_tcp'), this.live().struct('tcp_event_stats'));
  }

  /** Samples or drops not counted because their map was full, by map. */
  readErrors(): Sample[] {
    const map = this.live().map('netstack_errors');
    return MAP_ERROR.labels.map((name, i) => ({ labels: { map: name }, value: map.counterAt(i) }));
  }

  close(): void {
    clearInterval(this.sweeper);
    for (const link of this.links.splice(0)) {
      try {
        link.destroy();
      } catch (err) {
        this.ctx.log.warn('cannot destroy link', { target: link.target, err: (err as Error).message });
      }
    }
    this.object?.close();
    this.object = undefined;
  }

  private live(): BpfObject<Binding> {
    if (!this.object) throw new Error('the netsubsys object is not loaded');
    return this.object;
  }
}

function registerMetrics(probe: Netsubsys, ctx: ProbeContext<NetsubsysOptions>): void {
  const { registry, failures } = ctx;
  const where = 'netns is the inode number of the network namespace (ls -Li /proc/PID/ns/net)';
  new Log2Histogram({
    name: 'bpfnet_netstack_latency_seconds',
    help: `Time packets spent in a stage of the kernel network stack, on the interface where the stage began; ${where}. Stages: rx device_to_stack (driver to stack entry), stack_to_socket (to its TCP socket), socket_to_read (socket queue to the application's first read), stack_to_read (TCP past its own FIN: stack entry to first read); tx send_to_qdisc (TCP send call to the device queue), qdisc (device queue to driver start), driver (driver start to done).`,
    labelNames: ['direction', 'stage', 'ifname', 'netns'],
    minExp: 8, // 256 ns
    maxExp: 33, // 8.6 s
    scale: 1e9,
    registry,
    failures,
    collect: () => probe.readLatency(),
  });
  new CollectedCounter({
    name: 'bpfnet_skb_drops_total',
    help: `Packets the kernel freed as dropped (kfree_skb), by the kernel's drop reason and the interface they were on (empty: none); ${where}.`,
    labelNames: ['reason', 'ifname', 'netns'],
    registry,
    failures,
    collect: () => probe.readDrops(),
  });
  const tcp = perScrape(() => probe.readTcp());
  new CollectedCounter({
    name: 'bpfnet_tcp_resets_total',
    help: 'TCP resets sent (tx) and received (rx).',
    labelNames: ['family', 'direction'],
    registry,
    failures,
    collect: () =>
      tcp().flatMap((s, f) => [
        { labels: { family: FAMILY.labels[f]!, direction: 'rx' }, value: s.u64('resets_received') },
        { labels: { family: FAMILY.labels[f]!, direction: 'tx' }, value: s.u64('resets_sent') },
      ]),
  });
  new CollectedCounter({
    name: 'bpfnet_tcp_retransmitted_segments_total',
    help: 'TCP segments retransmitted (as the kernel counts RetransSegs).',
    labelNames: ['family'],
    registry,
    failures,
    collect: () => tcp().map((s, f) => ({ labels: { family: FAMILY.labels[f]! }, value: s.u64('retransmitted_segments') })),
  });
  new CollectedCounter({
    name: 'bpfnet_netstack_map_full_total',
    help: 'Stage samples (netstack_latency) or drops (netstack_drops) not counted because the map of their series was full.',
    labelNames: ['map'],
    registry,
    failures,
    collect: () => probe.readErrors(),
  });
}

export const NETSUBSYS_COMPONENT: Component<NetsubsysOptions> = {
  name: 'netsubsys',
  probes: ['netsubsys'],
  select: (o) => o.netsubsys,
  start(exporterCtx: ProbeContext<NetsubsysOptions>): RunningComponent {
    const ctx = { ...exporterCtx, log: exporterCtx.log.child('probes') };
    const probe = new Netsubsys(ctx);
    if (probe.loaded) registerMetrics(probe, ctx);
    return probe;
  },
};
