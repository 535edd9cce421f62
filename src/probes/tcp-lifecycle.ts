// SPDX-License-Identifier: Apache-2.0
// The BPF object behind the connect, accept and close probes
// (bpf/tcp-lifecycle.bpf.c): one tp_btf program on sock:inet_sock_set_state,
// and fexit on inet_csk_accept or tracepoints on accept exits (the accepting
// process). Needs BTF and kernel 5.12+ (tp_btf, bpf_skc_to_tcp_sock, BPF
// compare-and-exchange). Each probe's metrics live in its own module; this
// one loads, attaches, and reads the shared maps.
import { BpfError, BpfObject, RingBuffer, type BpfLink, type BpfProgram, cString, sumPerCpu } from '../libbpf';
import type { FieldName, MapName, ProgramName, ValueStruct } from '../libbpf/binding';
import { TCP_LIFECYCLE } from '../generated/tcp-lifecycle';
import { connEventDecoder } from '../tracing/conn-event';
import { Kind, vmlinuxBtf } from '../libbpf';
import { applySidecars } from './sidecar';
import { applyFilters } from '../filters';
import { TRACEFS_FIX, tracefsMount } from '../system';
import { bpfObjectPath } from '../paths';
import { Log2Histogram } from '../metrics/log2-histogram';
import { PerCpuValue, perCpuArray } from '../metrics/per-cpu';
import type { ProbeContext, ProbeStatus, RunningComponent } from '../component';
import type { TcpOptions } from '../options';

type Binding = typeof TCP_LIFECYCLE;

/** Label values, from the C enums (bpf/tcp-lifecycle.h, bpf/include/bpfnet.h). */
export const FAMILIES = TCP_LIFECYCLE.enums.family.labels;
export const ROLES = TCP_LIFECYCLE.enums.role.labels;
export const CONNECT_RESULTS = TCP_LIFECYCLE.enums.connect_result.labels;
const ERRORS = TCP_LIFECYCLE.enums.lifecycle_error.values;

/** The per-CPU arrays of statistics the metrics read, by family (and role). */
type StatsMap = Extract<MapName<Binding>, 'tcp_connect_stats' | 'tcp_accept_stats' | 'tcp_close_stats' | 'sidecar_stats'>;
export type StatsOf<M extends StatsMap> = PerCpuValue<FieldName<Binding, ValueStruct<Binding, M>>>;

/** A latency histogram by family, 1.024 us to 137 s, read from one field
 * of a per-family per-CPU array (read once per scrape). */
export function latencyByFamily<F extends string>(
  ctx: ProbeContext<TcpOptions>,
  name: string,
  help: string,
  read: () => PerCpuValue<F>[],
  field: F,
): Log2Histogram {
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
  programs: readonly ProgramName<Binding>[];
}
const ACCEPT_HOOKS: readonly AcceptHook[] = [
  { name: 'fexit/inet_csk_accept', programs: ['accept_fexit'] },
  { name: 'tracepoint/syscalls/sys_exit_accept{,4}', programs: ['accept4_exit', 'accept_exit'] },
];
const NO_ACCEPT_HOOK: AcceptHook = { name: 'none', programs: [] };

export class TcpLifecycle implements RunningComponent {
  readonly status = new Map<string, ProbeStatus>();
  private readonly links: BpfLink[] = [];
  private object: BpfObject<Binding> | undefined;
  private ring: RingBuffer | undefined;

  constructor(
    requested: readonly string[],
    private readonly ctx: ProbeContext<TcpOptions>,
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

  private load(enabled: Set<string>, hook: AcceptHook): BpfObject<Binding> {
    const obj = BpfObject.open(bpfObjectPath(TCP_LIFECYCLE.file), TCP_LIFECYCLE);
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
      // accepts beyond the port limit are counted under port 0 ("other")
      const key = obj.map('tcp_accepts').key();
      const keyLayout = obj.struct('accept_key');
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
    const tryAttach = (prog: ProgramName<Binding>): string | undefined => {
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
      (['sidecar_read', 'sidecar_send'] as const)
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
  private startEvents(obj: BpfObject<Binding>, sink: NonNullable<ProbeContext<TcpOptions>['events']>): void {
    const decode = connEventDecoder(obj.struct('conn_event'), obj.struct('tuple'));
    this.ring = new RingBuffer(obj.map('tcp_events'), (data) => sink.onConnEvent(decode(data)));
    this.ring.start((err) => this.ctx.log.warn('cannot read connection events', { err: err.message }));
  }

  /** Events the ring buffer had no room for, of failed connects and closes. */
  readEventsLost(): { connect: number; close: number } {
    const map = this.live().map('tcp_lifecycle_errors');
    return { connect: map.counterAt(ERRORS.ERR_LOST_CONNECT), close: map.counterAt(ERRORS.ERR_LOST_CLOSE) };
  }

  programs(): BpfProgram[] {
    return this.object ? this.object.programs().filter((p) => p.autoload) : [];
  }

  objects(): BpfObject<Binding>[] {
    return this.object ? [this.object] : [];
  }

  /** Reads a per-CPU array of statistics: its first count entries (all of them by default). */
  readArray<M extends StatsMap>(mapName: M, count?: number): StatsOf<M>[] {
    const obj = this.live();
    return perCpuArray(obj.map(mapName), obj.struct(TCP_LIFECYCLE.maps[mapName].value as ValueStruct<Binding, M>), count);
  }

  /** Accepts by (family, port, command); port 0 stands for what did not fit. */
  readAccepts(): { family: number; port: number; comm: string; count: number }[] {
    const map = this.live().map('tcp_accepts');
    const layout = this.live().struct('accept_key');
    return map.entries().map(({ key, value }) => ({
      family: key.readUInt8(layout.offset('family')),
      port: key.readUInt16LE(layout.offset('port')),
      comm: cString(key, layout.offset('comm'), layout.length('comm')),
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
    return this.live().map('tcp_lifecycle_errors').counterAt(ERRORS.ERR_CONN_TABLE_FULL);
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

  private live(): BpfObject<Binding> {
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
