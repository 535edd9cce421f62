// SPDX-License-Identifier: Apache-2.0
// Socket redirect (bpf/sock-redirect.bpf.c): a sockops program on a cgroup v2
// pairs the two ends of same-host TCP connections in a sockhash, and an
// sk_msg program on the sockhash hands their messages straight to the peer
// socket. Needs kernel 5.10+, CAP_NET_ADMIN besides what loading needs
// (CAP_BPF and CAP_PERFMON, or CAP_SYS_ADMIN), and bpffs.
//
// The sockhash, the control map and the sockops link are pinned under
// /sys/fs/bpf/bpfnet-exporter/redirect-<cgroup id>/: if the exporter dies
// (kill -9), redirect goes on, and the next start on that cgroup finds the
// pins, pauses and detaches the old programs, and takes over. Stopping pauses
// redirect (messages take the stack again), detaches, and removes the pins;
// sockets already paired keep the old sockhash alive until they close, so
// nothing redirected to them is lost.
import fs from 'node:fs';
import path from 'node:path';
import { EnvironmentError } from '../errors';
import { BPF_SK_MSG_VERDICT, BpfMap, BpfObject, summaryOf, type BpfLink, type BpfProgram } from '../libbpf';
import { structLayout } from '../libbpf/binding';
import { SOCK_REDIRECT } from '../generated/sock-redirect';
import type { Logger } from '../log';
import type { ProbeStatus, RunningComponent } from '../component';
import type { RedirectOptions } from '../options';
import { bpfObjectPath } from '../paths';
import { mountsOfType } from '../system';

type Binding = typeof SOCK_REDIRECT;
/** Label values, from the C enums (bpf/sock-redirect.h, bpf/include/bpfnet.h). */
export const REDIRECT_FAMILIES = SOCK_REDIRECT.enums.family.labels;
export const FALLBACK_REASONS = SOCK_REDIRECT.enums.fallback_reason.labels;

export const BPFFS = '/sys/fs/bpf';
export const PIN_ROOT = path.join(BPFFS, 'bpfnet-exporter');

/** struct redirect_control, also read and written through the pins */
const CONTROL = structLayout(SOCK_REDIRECT, 'redirect_control');

export interface QueuedBytes {
  /** bytes redirected to sockets of the sockhash and not read yet, by family */
  bytes: number[];
  /** the most one socket holds, by family */
  max: number[];
}

/** The pins of the redirect on one cgroup. */
export function pinDir(cgroupId: bigint): string {
  return path.join(PIN_ROOT, `redirect-${cgroupId}`);
}

const PINS = { socks: 'socks', control: 'control', sockops: 'sockops' } as const;

export class SockRedirect implements RunningComponent {
  readonly status: ReadonlyMap<string, ProbeStatus> = new Map([['redirect', { up: true }]]);
  private object: BpfObject<Binding> | undefined;
  private link: BpfLink | undefined;
  private msgAttached = false;
  private readonly dir: string;
  private stopped = false;

  private constructor(
    private readonly opts: RedirectOptions,
    private readonly log: Logger,
  ) {
    this.dir = pinDir(opts.cgroup.id);
  }

  /** Loads, takes over what an earlier instance left, attaches; throws with
   * one clear line, leaving nothing behind. */
  static start(opts: RedirectOptions, log: Logger): SockRedirect {
    if (!mountsOfType('bpf').includes(BPFFS)) {
      throw new EnvironmentError(`redirect pins its maps in bpffs, which is not mounted at ${BPFFS}: mount -t bpf bpf ${BPFFS}`);
    }
    const r = new SockRedirect(opts, log);
    try {
      r.open();
      r.takeOver();
      r.load();
      r.attach();
    } catch (err) {
      r.stop();
      throw err;
    }
    return r;
  }

  /** Pins of an instance that did not stop (killed, crashed): pause its
   * programs and remove them, unless that instance still runs. */
  private takeOver(): void {
    if (!fs.existsSync(this.dir)) return;
    if (fs.existsSync(path.join(this.dir, PINS.control))) {
      const owner = assertNotRunning(this.opts.cgroup);
      setPaused(this.dir, true); // its sockets' messages take the stack
      this.log.warn('taking over the socket redirect of an exporter that did not stop', { pid: owner.pid, pins: this.dir });
    }
    // unpinning the link detaches the old sockops program
    for (const name of Object.values(PINS)) fs.rmSync(path.join(this.dir, name), { force: true });
    fs.rmdirSync(this.dir);
  }

  /** Opens the object and binds the shared structs (BTF is there before load). */
  private open(): void {
    this.object = BpfObject.open(bpfObjectPath(SOCK_REDIRECT.file), SOCK_REDIRECT);
  }

  private load(): void {
    const obj = this.live();
    obj.setConstants({ ports_filtered: this.opts.ports.length > 0 });
    obj.load();
    const one = Buffer.from([1]);
    for (const port of this.opts.ports) {
      const key = Buffer.alloc(2);
      key.writeUInt16LE(port);
      obj.map('redirect_ports').update(key, one);
    }
    this.writeControl(false);
  }

  private attach(): void {
    const obj = this.object!;
    fs.mkdirSync(this.dir, { recursive: true });
    obj.map('redirect_socks').pin(path.join(this.dir, PINS.socks));
    obj.map('redirect_control').pin(path.join(this.dir, PINS.control));
    // sk_msg first: a socket takes the sockhash's programs when it joins
    obj.program('redirect_msg').attachToMap(obj.map('redirect_socks').fd, BPF_SK_MSG_VERDICT, 'the redirect sockhash');
    this.msgAttached = true;
    const cgroupFd = fs.openSync(this.opts.cgroup.dir, 'r');
    try {
      this.link = obj.program('redirect_sockops').attachCgroup(cgroupFd, this.opts.cgroup.dir);
    } catch (err) {
      throw new EnvironmentError(`cannot attach the redirect to cgroup ${this.opts.cgroup.dir}: ${summaryOf(err)}`);
    } finally {
      fs.closeSync(cgroupFd);
    }
    this.link.pin(path.join(this.dir, PINS.sockops));
  }

  private writeControl(paused: boolean): void {
    const value = Buffer.alloc(CONTROL.size);
    value.writeUInt32LE(paused ? 1 : 0, CONTROL.offset('paused'));
    value.writeUInt32LE(process.pid, CONTROL.offset('owner_pid'));
    value.writeBigUInt64LE(processStart(process.pid) ?? 0n, CONTROL.offset('owner_start'));
    this.live().map('redirect_control').update(Buffer.alloc(4), value);
  }

  /** Whether messages of paired sockets are being redirected now. */
  get enabled(): boolean {
    if (!this.object || !this.link) return false;
    const value = this.object.map('redirect_control').lookup(Buffer.alloc(4));
    return value !== undefined && value.readUInt32LE(CONTROL.offset('paused')) === 0;
  }

  /** What the sockets in the sockhash hold unread now: one run of a
   * program that walks them in the kernel. */
  readQueued(): QueuedBytes {
    const layout = this.live().struct('redirect_queued');
    const ctx = Buffer.alloc(layout.size);
    this.live().program('redirect_queued_sum').testRun(ctx);
    const read = (field: 'bytes' | 'max') => Array.from({ length: layout.length(field) }, (_, f) => Number(ctx.readBigUInt64LE(layout.offset(field) + 8 * f)));
    return { bytes: read('bytes'), max: read('max') };
  }

  /** Sockets in the sockhash now, by family: one key read per socket. */
  countSockets(): number[] {
    const counts = REDIRECT_FAMILIES.map(() => 0);
    const offset = this.live().struct('sock_key').offset('family');
    for (const key of this.live().map('redirect_socks').keys()) {
      const f = key.readUInt32LE(offset);
      if (f < counts.length) counts[f]!++;
    }
    return counts;
  }

  programs(): BpfProgram[] {
    return this.object?.isLoaded ? this.object.programs() : [];
  }

  /** whether stop() has begun */
  get stopping(): boolean {
    return this.stopped;
  }

  /** none with filter maps: the redirect's scope is its cgroup */
  objects(): [] {
    return [];
  }

  close(): void {
    this.stop();
  }

  /** Pauses redirect, detaches both programs, removes the pins. Safe to call twice. */
  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    const obj = this.object;
    const attempt = (what: string, fn: () => void) => {
      try {
        fn();
      } catch (err) {
        this.log.warn(`cannot ${what}`, { err: summaryOf(err) });
      }
    };
    if (obj?.isLoaded) attempt('pause redirect', () => this.writeControl(true));
    if (this.link) {
      const link = this.link;
      attempt('unpin the sockops link', () => link.unpin());
      attempt('detach the sockops program', () => link.destroy());
      this.link = undefined;
    }
    if (this.msgAttached && obj) {
      attempt('detach the sk_msg program', () =>
        obj.program('redirect_msg').detachFromMap(obj.map('redirect_socks').fd, BPF_SK_MSG_VERDICT, 'the redirect sockhash'),
      );
      this.msgAttached = false;
    }
    attempt('remove the redirect pins', () => {
      for (const name of Object.values(PINS)) fs.rmSync(path.join(this.dir, name), { force: true });
      if (fs.existsSync(this.dir)) fs.rmdirSync(this.dir);
      removeIfEmpty(PIN_ROOT);
    });
    obj?.close();
    this.object = undefined;
  }

  /** The loaded object, for the metrics to read its maps. */
  bound(): BpfObject<Binding> {
    return this.live();
  }

  private live(): BpfObject<Binding> {
    if (!this.object) throw new Error('the redirect object is not loaded');
    return this.object;
  }
}

/** Fails with one line if another live exporter redirects this cgroup;
 * returns the owner recorded in the pins otherwise (or undefined: no pins). */
export function assertNotRunning(cgroup: RedirectOptions['cgroup']): { pid: number } {
  const dir = pinDir(cgroup.id);
  if (!fs.existsSync(path.join(dir, PINS.control))) return { pid: 0 };
  const owner = readControl(dir);
  if (owner.pid !== process.pid && processStart(owner.pid) === owner.start) {
    throw new EnvironmentError(
      `another bpfnet-exporter (pid ${owner.pid}) redirects sockets of ${cgroup.dir}: stop it first, or give another --redirect-cgroup`,
    );
  }
  return owner;
}

/** The pinned control of the redirect whose pins are in dir: who owns it, and whether it is paused. */
export function readControl(dir: string): { pid: number; start: bigint; paused: boolean } {
  const control = BpfMap.openPinned(path.join(dir, PINS.control));
  try {
    const value = control.lookup(Buffer.alloc(4));
    if (!value) throw new Error(`${dir}: the control map is empty`);
    return {
      pid: value.readUInt32LE(CONTROL.offset('owner_pid')),
      start: value.readBigUInt64LE(CONTROL.offset('owner_start')),
      paused: value.readUInt32LE(CONTROL.offset('paused')) !== 0,
    };
  } finally {
    control.close();
  }
}

/** Pauses (every message of its sockets takes the stack) or resumes the
 * redirect whose pins are in dir, running in this process or not. */
export function setPaused(dir: string, paused: boolean): void {
  const control = BpfMap.openPinned(path.join(dir, PINS.control));
  try {
    const key = Buffer.alloc(4);
    const value = control.lookup(key);
    if (!value) throw new Error(`${dir}: the control map is empty`);
    value.writeUInt32LE(paused ? 1 : 0, CONTROL.offset('paused'));
    control.update(key, value);
  } finally {
    control.close();
  }
}

/** A process's start time in clock ticks since boot (/proc/PID/stat field
 * 22), which tells a live process from a later one with the same pid;
 * undefined if there is no such process, or only its zombie. */
export function processStart(pid: number): bigint | undefined {
  let stat: string;
  try {
    stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  // the command (field 2) may hold spaces and parentheses: count from the last ')'
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return fields[0] === 'Z' ? undefined : BigInt(fields[19]!);
}

/** Removes a directory unless something else (another instance's pins) is in it. */
function removeIfEmpty(dir: string): void {
  try {
    fs.rmdirSync(dir);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'ENOTEMPTY' && code !== 'ENOENT') throw err;
  }
}
