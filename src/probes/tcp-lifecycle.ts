// SPDX-License-Identifier: Apache-2.0
// The BPF object behind the connect, accept and close probes
// (bpf/tcp-lifecycle.bpf.c): one tp_btf program on sock:inet_sock_set_state,
// and fexit on inet_csk_accept or tracepoints on accept exits (the accepting
// process). Needs BTF and kernel 5.15+ (tp_btf, bpf_skc_to_tcp_sock, BPF
// compare-and-exchange, a socket's cgroup as 5.15 keeps it). This module
// loads and attaches it, resolves the cgroups its maps are keyed by to
// workloads (src/workload/), and hands its events on; its metrics are
// tables over its maps (tcp-metrics.ts).
import { BpfObject, cString, detailOf, RingBuffer, summaryOf, type BpfLink, type BpfProgram, type Layout } from '../libbpf';
import type { ProgramName } from '../libbpf/binding';
import { TCP_LIFECYCLE } from '../generated/tcp-lifecycle';
import { connEventDecoder } from '../tracing/conn-event';
import { Kind, vmlinuxBtf } from '../libbpf';
import { applySidecars } from './sidecar';
import { applyFilters } from '../filters';
import { TRACEFS_FIX, tracefsMount } from '../system';
import { bpfObjectPath } from '../paths';
import { destroyLinks, type ProbeContext, type ProbeStatus, type RunningComponent } from '../component';
import type { TcpOptions } from '../options';
import { WorkloadResolver } from '../workload/resolver';
import { PodAddresses } from '../workload/pod-addresses';
import { keyedBy, type KeyedBy } from '../workload/labels';

type Binding = typeof TCP_LIFECYCLE;

const FAMILIES = TCP_LIFECYCLE.enums.family.labels;
const ROLES = TCP_LIFECYCLE.enums.role.labels;
/** struct cgroup_names' names: CGROUP_NAME_LEVELS of CGROUP_NAME_LEN bytes */
const CGROUP_NAMES = TCP_LIFECYCLE.structs.cgroup_names.fields.names;

/** Ways to learn which process accepted a connection, best first. */
interface AcceptHook {
  name: string;
  programs: readonly ProgramName<Binding>[];
  /** with sidecars, the same way: where a sidecar learns a connection's
   * original destination (getsockopt SO_ORIGINAL_DST) */
  sidecar: readonly ProgramName<Binding>[];
}
const ACCEPT_HOOKS: readonly AcceptHook[] = [
  { name: 'fexit/inet_csk_accept', programs: ['accept_fexit'], sidecar: ['sidecar_origdst_fexit'] },
  {
    name: 'tracepoint/syscalls/sys_exit_accept{,4}',
    programs: ['accept4_exit', 'accept_exit'],
    sidecar: ['sidecar_getsockopt_exit'],
  },
];
const NO_ACCEPT_HOOK: AcceptHook = { name: 'none', programs: [], sidecar: [] };

export class TcpLifecycle implements RunningComponent {
  readonly status = new Map<string, ProbeStatus>();
  private readonly links: BpfLink[] = [];
  private object: BpfObject<Binding> | undefined;
  private ring: RingBuffer | undefined;
  /** what the aggregation maps are keyed by */
  readonly keys: KeyedBy;
  /** cgroup ids to workloads, when keyed by cgroup or sending spans */
  readonly workloads: WorkloadResolver | undefined;
  /** the pods on this node by the numbers pod_addrs gives them */
  peers: PodAddresses | undefined;

  constructor(
    requested: readonly string[],
    private readonly ctx: ProbeContext<TcpOptions>,
  ) {
    const enabled = new Set(requested);
    const a = ctx.options.attribution;
    this.keys = keyedBy(a.labels);
    if ((this.keys.cgroup || ctx.events) && a.cgroupMount) {
      this.workloads = new WorkloadResolver({
        cgroupMount: a.cgroupMount,
        containersDir: a.containersDir,
        log: ctx.log,
        kernelNames: (id) => this.cgroupNames(id),
      });
    } else if (this.keys.cgroup) {
      ctx.log.warn('no cgroup v2 mount: TCP metrics have no workload labels');
    }
    const needAccept = enabled.has('accept') || enabled.has('close');
    // the best way to learn who accepted first; fall back when the kernel refuses it
    const hooks = needAccept ? ACCEPT_HOOKS : [NO_ACCEPT_HOOK];
    for (const [i, hook] of hooks.entries()) {
      const last = i === hooks.length - 1;
      try {
        this.object = this.load(enabled, hook);
      } catch (err) {
        if (!last) {
          ctx.log.debug('accept hook unavailable, trying the next', { hook: hook.name, err: summaryOf(err) });
          continue;
        }
        for (const p of requested) this.status.set(p, { up: false, reason: `load tcp-lifecycle: ${summaryOf(err)}` });
        ctx.log.error('cannot load the TCP probes', { probes: requested.join(','), err: summaryOf(err) });
        ctx.log.debug('why the TCP probes cannot load', { err: detailOf(err) });
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
      this.workloads?.start();
      if (this.workloads && (this.keys.peer || ctx.events)) {
        const obj = this.object;
        this.peers = new PodAddresses(obj.map('pod_addrs'), obj.struct('pod_addr'), FAMILIES, this.workloads, ctx.log);
        this.peers.start();
      }
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
        sidecar_by_pid: sidecars.some((s) => s.pids.length > 0),
        sidecar_by_comm: sidecars.some((s) => s.comms.length > 0),
        key_cgroup: this.keys.cgroup,
        key_peer_port: this.keys.peerPort,
        key_peer: this.keys.peer,
      });
      // the sidecar's hooks: a receive of any kind where the kernel traces
      // it (6.3+), else reads of bytes; a kernel without
      // tcp_sendmsg_locked (6.1) cannot tell reuse
      // (the kernel's BTF is read only with sidecars: without it, the load
      // itself says what is missing)
      const has = (tp: string) => sidecars.length > 0 && vmlinuxBtf().find(`btf_trace_${tp}`, Kind.Typedef) !== undefined;
      const recvTraced = has('sock_recv_length');
      obj.program('sidecar_recv').autoload = recvTraced;
      obj.program('sidecar_read').autoload = sidecars.length > 0 && !recvTraced;
      obj.program('sidecar_fork').autoload = sidecars.length > 0;
      obj.program('sidecar_send').autoload = has('tcp_sendmsg_locked');
      const { maxSeries } = this.ctx.options.attribution;
      // room for the label sets, and for the overflow entries
      obj.setMaxEntries('tcp_connects', maxSeries + FAMILIES.length);
      obj.setMaxEntries('tcp_accepts', this.ctx.options.acceptPortLimit + FAMILIES.length);
      obj.setMaxEntries('tcp_closes', maxSeries + FAMILIES.length * ROLES.length);
      obj.setMaxEntries('tcp_events', this.ctx.options.eventRingBytes);
      for (const h of ACCEPT_HOOKS) {
        for (const p of h.programs) obj.program(p).autoload = h === hook;
        for (const p of h.sidecar) obj.program(p).autoload = h === hook && sidecars.length > 0;
      }
      obj.load();
      // what finds a map full counts under its overflow entry: all key
      // fields 0 but family (and role)
      FAMILIES.forEach((_, family) => {
        overflowEntry(obj, 'tcp_connects', 'connect_key', { family });
        overflowEntry(obj, 'tcp_accepts', 'accept_key', { family });
        ROLES.forEach((_, role) => overflowEntry(obj, 'tcp_closes', 'close_key', { family, role }));
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
        return summaryOf(err);
      }
    };
    const stateErr =
      tryAttach('tcp_state') ??
      (['sidecar_recv', 'sidecar_read', 'sidecar_fork', 'sidecar_send'] as const)
        .filter((p) => obj.program(p).autoload)
        .map(tryAttach)
        .find((e) => e !== undefined);
    if (stateErr) log.error('cannot attach program', { program: 'tcp_state', err: stateErr });
    const acceptErr = [...hook.programs, ...hook.sidecar]
      .filter((p) => obj.program(p).autoload)
      .map(tryAttach)
      .find((e) => e !== undefined);
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
    const workloads = this.workloads;
    this.ring = new RingBuffer(obj.map('tcp_events'), (data) => {
      const e = decode(data);
      if (workloads) e.workload = workloads.workload(e.cgroup);
      e.peerWorkload = this.peers?.pod(e.peer);
      sink.onConnEvent(e);
    });
    this.ring.start((err) => this.ctx.log.warn('cannot read connection events', { err: err.message }));
  }

  programs(): BpfProgram[] {
    return this.object ? this.object.programs().filter((p) => p.autoload) : [];
  }

  objects(): BpfObject<Binding>[] {
    return this.object ? [this.object] : [];
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
    this.workloads?.close();
    this.peers?.close();
  }

  private detach(): void {
    destroyLinks(this.links, this.ctx.log);
  }

  /** What cgroup_names holds for a cgroup id (bpf/tcp-lifecycle.h). */
  private cgroupNames(id: bigint): { level: number; names: string[] } | undefined {
    const obj = this.object;
    if (!obj) return undefined;
    const map = obj.map('cgroup_names');
    const key = map.key();
    key.writeBigUInt64LE(id);
    const v = map.lookup(key);
    if (!v) return undefined;
    const layout = obj.struct('cgroup_names');
    const at = layout.offset('names');
    const len = CGROUP_NAMES.size / CGROUP_NAMES.length;
    const names = Array.from({ length: CGROUP_NAMES.length }, (_, i) => cString(v, at + i * len, len));
    return { level: v.readUInt32LE(layout.offset('level')), names };
  }

  /** The loaded object, for the metrics to read its maps. */
  bound(): BpfObject<Binding> {
    return this.live();
  }

  private live(): BpfObject<Binding> {
    if (!this.object) throw new Error('the TCP lifecycle object is not loaded');
    return this.object;
  }
}

/** Makes an aggregation map's overflow entry: a zeroed value under a key
 * whose fields are 0 but these. */
function overflowEntry(
  obj: BpfObject<Binding>,
  map: 'tcp_connects' | 'tcp_accepts' | 'tcp_closes',
  struct: 'connect_key' | 'accept_key' | 'close_key',
  fields: { family: number; role?: number },
): void {
  const m = obj.map(map);
  const layout: Layout<string> = obj.struct(struct);
  const key = m.key();
  key.fill(0);
  key.writeUInt8(fields.family, layout.offset('family'));
  if (fields.role !== undefined) key.writeUInt8(fields.role, layout.offset('role'));
  m.update(key, Buffer.alloc(m.valueBufferSize));
}
