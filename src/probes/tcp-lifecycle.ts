// SPDX-License-Identifier: Apache-2.0
// The BPF object behind the connect, accept and close probes
// (bpf/tcp-lifecycle.bpf.c): one tp_btf program on sock:inet_sock_set_state,
// and fexit on inet_csk_accept or tracepoints on accept exits (the accepting
// process). Needs BTF and kernel 5.12+ (tp_btf, bpf_skc_to_tcp_sock, BPF
// compare-and-exchange). This module loads and attaches it and hands its
// events on; its metrics are tables over its maps (tcp-metrics.ts).
import { BpfObject, detailOf, RingBuffer, summaryOf, type BpfLink, type BpfProgram } from '../libbpf';
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

type Binding = typeof TCP_LIFECYCLE;

const FAMILIES = TCP_LIFECYCLE.enums.family.labels;

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
        return summaryOf(err);
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
  }

  private detach(): void {
    destroyLinks(this.links, this.ctx.log);
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
