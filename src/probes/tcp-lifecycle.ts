// SPDX-License-Identifier: Apache-2.0
// The BPF object behind the connect, accept and close probes
// (bpf/tcp-lifecycle.bpf.c): one tp_btf program on sock:inet_sock_set_state,
// and fexit on inet_csk_accept or tracepoints on accept exits (the accepting
// process). Needs BTF and kernel 5.12+ (tp_btf, bpf_skc_to_tcp_sock, BPF
// compare-and-exchange). Each probe's metrics live in its own module; this
// one loads, attaches, and reads the shared maps.
import { BpfError, BpfObject, RingBuffer, type BpfLink, type BpfProgram, cString, sumPerCpu, type Layout, type StructSpec } from '../libbpf';
import { CONN_EVENT_SPEC, connEventDecoder } from '../tracing/conn-event';
import { Kind, vmlinuxBtf } from '../libbpf';
import { applySidecars } from './sidecar';
import { applyFilters } from '../filters';
import { TRACEFS_FIX, tracefsMount } from '../system';
import { bpfObjectPath } from '../paths';
import { HIST_SLOTS, Log2Histogram } from '../metrics/log2-histogram';
import { PerCpuValue, perCpuArray } from '../metrics/per-cpu';
import type { ProbeContext, ProbeStatus, RunningGroup } from './probe';

export const TCP_PROBES = ['connect', 'accept', 'close'] as const;

/** Label values in the order of the C enums in bpf/tcp-lifecycle.h. */
export const FAMILIES = ['ipv4', 'ipv6'] as const;
export const ROLES = ['client', 'server'] as const;
export const CONNECT_RESULTS = ['established', 'refused', 'timeout', 'aborted'] as const;
/** enum lifecycle_error */
const LIFECYCLE_ERRORS = ['conn_table_full', 'lost_connect', 'lost_close'] as const;

const HIST: StructSpec = { struct: 'hist', fields: { slots: { array: 'u64', length: HIST_SLOTS }, sum: 'u64' } };

export const SPECS = {
  connect: { struct: 'connect_stats', fields: { results: { array: 'u64', length: CONNECT_RESULTS.length }, latency_ns: HIST } },
  accept: { struct: 'accept_stats', fields: { handshake_ns: HIST, queue_ns: HIST } },
  acceptKey: { struct: 'accept_key', fields: { port: 'u16', family: 'u8', comm: { array: 'u8', length: 16 } } },
  sidecar: {
    struct: 'sidecar_stats',
    fields: { forward_ns: HIST, upstream_ns: HIST, reused: 'u64' },
  },
  close: {
    struct: 'close_stats',
    fields: { retransmits: 'u64', lifetime_ns: HIST, sent_bytes: HIST, received_bytes: HIST, srtt_ns: HIST },
  },
} satisfies Record<string, StructSpec>;

/** A latency histogram by family, 1.024 us to 137 s, read from one field
 * of a per-family per-CPU array (read once per scrape). */
export function latencyByFamily(ctx: ProbeContext, name: string, help: string, read: () => PerCpuValue[], field: string): Log2Histogram {
  return new Log2Histogram({
    name,
    help,
    labelNames: ['family'],
    minExp: 10, // 1.024 us
    maxExp: 37, // 137 s
    scale: 1e9,
    registry: ctx.registry,
    failures: ctx.failures,
    collect: () => read().map((stats, f) => stats.hist(field, { family: FAMILIES[f]! })),
  });
}

/** Ways to learn which process accepted a connection, best first. */
interface AcceptHook {
  name: string;
  programs: readonly string[];
}
const ACCEPT_HOOKS: readonly AcceptHook[] = [
  { name: 'fexit/inet_csk_accept', programs: ['accept_fexit'] },
  { name: 'tracepoint/syscalls/sys_exit_accept{,4}', programs: ['accept4_exit', 'accept_exit'] },
];
const NO_ACCEPT_HOOK: AcceptHook = { name: 'none', programs: [] };

export class TcpLifecycle implements RunningGroup {
  readonly status = new Map<string, ProbeStatus>();
  private readonly links: BpfLink[] = [];
  private object: BpfObject | undefined;
  private readonly layouts = new Map<string, Layout>();
  private ring: RingBuffer | undefined;

  constructor(
    requested: readonly string[],
    private readonly ctx: ProbeContext,
  ) {
    const enabled = new Set(requested);
    const needAccept = enabled.has('accept') || enabled.has('close');
    // the best way to learn who accepted first; fall back when the kernel refuses it
    const hooks = needAccept ? ACCEPT_HOOKS : [NO_ACCEPT_HOOK];
    for (const [i, hook] of hooks.entries()) {
      const last = i === hooks.length - 1;
      try {
        this.object = this.load(enabled, hook);
      } catch (err) {
        if (!last) {
          ctx.log.debug('accept hook unavailable, trying the next', { hook: hook.name, err: summary(err) });
          continue;
        }
        for (const p of requested) this.status.set(p, { up: false, reason: `load tcp-lifecycle: ${summary(err)}` });
        ctx.log.error('cannot load the TCP probes', { probes: requested.join(','), err: summary(err) });
        ctx.log.debug('why the TCP probes cannot load', { err: detail(err) });
        return;
      }
      const acceptErr = this.attach(this.object, enabled, hook);
      if (acceptErr && !last) {
        ctx.log.debug('accept hook unavailable, trying the next', { hook: hook.name, err: acceptErr });
        this.detach();
        this.object?.close();
        this.object = undefined;
        this.status.clear();
        continue;
      }
      if (needAccept && !acceptErr) ctx.log.info('accepting processes found by', { hook: hook.name });
      if (ctx.events) this.startEvents(this.object, ctx.events);
      return;
    }
  }

  private load(enabled: Set<string>, hook: AcceptHook): BpfObject {
    const obj = BpfObject.open(bpfObjectPath('tcp-lifecycle'));
    const sidecars = this.ctx.options.sidecars;
    try {
      obj.setConstants({
        enable_connect: enabled.has('connect'),
        enable_accept: enabled.has('accept'),
        enable_close: enabled.has('close'),
        enable_events: this.ctx.events !== undefined,
        enable_sidecar: sidecars.length > 0,
      });
      // the sidecar's hooks; a kernel without tcp_sendmsg_locked (6.1) cannot tell reuse
      obj.program('sidecar_read').autoload = sidecars.length > 0;
      obj.program('sidecar_send').autoload = sidecars.length > 0 && vmlinuxBtf().find('btf_trace_tcp_sendmsg_locked', Kind.Typedef) !== undefined;
      obj.setMaxEntries('tcp_accepts', this.ctx.options.acceptPortLimit + FAMILIES.length);
      obj.setMaxEntries('tcp_events', this.ctx.options.eventRingBytes);
      for (const h of ACCEPT_HOOKS) for (const p of h.programs) obj.program(p).autoload = h === hook;
      obj.load();
      for (const [name, spec] of Object.entries(SPECS)) this.layouts.set(name, obj.layout(spec));
      // accepts beyond the port limit are counted under port 0 ("other")
      const key = obj.map('tcp_accepts').key();
      const keyLayout = this.layouts.get('acceptKey')!;
      FAMILIES.forEach((_, family) => {
        key.fill(0);
        key.writeUInt8(family, keyLayout.offset('family'));
        obj.map('tcp_accepts').update(key, Buffer.alloc(obj.map('tcp_accepts').valueBufferSize));
      });
      applyFilters(obj, this.ctx.filters);
      applySidecars(obj, sidecars);
      return obj;
    } catch (err) {
      obj.close();
      throw err;
    }
  }

  /** Attaches the state program and the accept hook's programs, and sets each
   * probe's status; returns why the accept hook failed, if it did. */
  private attach(obj: BpfObject, enabled: Set<string>, hook: AcceptHook): string | undefined {
    const log = this.ctx.log;
    const tryAttach = (prog: string): string | undefined => {
      if (obj.program(prog).section.startsWith('tracepoint/') && !tracefsMount()) {
        return `${hook.name} needs tracefs, which is not mounted: ${TRACEFS_FIX}`;
      }
      try {
        this.links.push(obj.program(prog).attach());
        return undefined;
      } catch (err) {
        return summary(err);
      }
    };
    const stateErr =
      tryAttach('tcp_state') ??
      ['sidecar_read', 'sidecar_send']
        .filter((p) => obj.program(p).autoload)
        .map(tryAttach)
        .find((e) => e !== undefined);
    if (stateErr) log.error('cannot attach program', { program: 'tcp_state', err: stateErr });
    const acceptErr = hook.programs.map(tryAttach).find((e) => e !== undefined);
    for (const p of enabled) {
      const reason = stateErr ?? (p === 'accept' ? acceptErr : undefined);
      this.status.set(p, reason ? { up: false, reason } : { up: true });
    }
    if (acceptErr && hook === ACCEPT_HOOKS[ACCEPT_HOOKS.length - 1]) {
      log.error('cannot attach the accept hook', { hook: hook.name, err: acceptErr });
      if (enabled.has('close') && !stateErr) {
        log.warn('close probe runs without accept attribution: closes of accepted connections are not filtered by --pid');
      }
    }
    return acceptErr;
  }

  /** Hands each connection event to sink, from the event loop, decoded. */
  private startEvents(obj: BpfObject, sink: NonNullable<ProbeContext['events']>): void {
    const decode = connEventDecoder(obj.layout(CONN_EVENT_SPEC));
    this.ring = new RingBuffer(obj.map('tcp_events'), (data) => sink.onConnEvent(decode(data)));
    this.ring.start((err) => this.ctx.log.warn('cannot read connection events', { err: err.message }));
  }

  /** Events the ring buffer had no room for, of failed connects and closes. */
  readEventsLost(): { connect: number; close: number } {
    const map = this.live().map('tcp_lifecycle_errors');
    return { connect: map.counterAt(LIFECYCLE_ERRORS.indexOf('lost_connect')), close: map.counterAt(LIFECYCLE_ERRORS.indexOf('lost_close')) };
  }

  programs(): BpfProgram[] {
    return this.object ? this.object.programs().filter((p) => p.autoload) : [];
  }

  objects(): BpfObject[] {
    return this.object ? [this.object] : [];
  }

  /** Reads every key of a per-CPU array map of the given struct. */
  readArray(mapName: string, spec: keyof typeof SPECS, keys: number): PerCpuValue[] {
    return perCpuArray(this.live().map(mapName), this.layouts.get(spec)!, keys);
  }

  /** Accepts by (family, port, command); port 0 stands for what did not fit. */
  readAccepts(): { family: number; port: number; comm: string; count: number }[] {
    const map = this.live().map('tcp_accepts');
    const layout = this.layouts.get('acceptKey')!;
    return map.entries().map(({ key, value }) => ({
      family: key.readUInt8(layout.offset('family')),
      port: key.readUInt16LE(layout.offset('port')),
      comm: cString(key, layout.offset('comm'), 16),
      count: sumPerCpu(value, map.stride, 0),
    }));
  }

  /** Connections whose set of the in-kernel table was full, kept in its
   * overflow hash map now. */
  readOverflowed(): number {
    return Number(this.live().readGlobal('.bss', 'sock_table_overflowed'));
  }

  /** Connections not measured because the connection table was full. */
  readUntracked(): number {
    return this.live().map('tcp_lifecycle_errors').counterAt(LIFECYCLE_ERRORS.indexOf('conn_table_full'));
  }

  get loaded(): boolean {
    return this.object !== undefined;
  }

  async close(): Promise<void> {
    // the programs first, so that no event comes after the last drain
    this.detach();
    await this.ring?.close();
    this.ring = undefined;
    this.object?.close();
    this.object = undefined;
  }

  private detach(): void {
    for (const link of this.links.splice(0)) {
      try {
        link.destroy();
      } catch (err) {
        this.ctx.log.warn('cannot destroy link', { target: link.target, err: (err as Error).message });
      }
    }
  }

  private live(): BpfObject {
    if (!this.object) throw new Error('the TCP lifecycle object is not loaded');
    return this.object;
  }
}

function detail(err: unknown): string {
  return err instanceof BpfError ? err.detail() : String((err as Error).message ?? err);
}

function summary(err: unknown): string {
  return err instanceof BpfError ? err.summary() : String((err as Error).message ?? err);
}
