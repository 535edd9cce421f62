// SPDX-License-Identifier: Apache-2.0
// The addresses of the pods on this node, for the kernel to tell which pod a
// connect goes to (pod_addrs in bpf/tcp-lifecycle.bpf.c): each pod gets a
// number, and each address of its network namespace maps to it. Addresses
// are read from /proc/PID/net of a process in the pod (fib_trie's local
// IPv4 addresses, if_inet6's global IPv6 ones), every few seconds and never
// per event; pods in the node's own network namespace (hostNetwork) are
// left out, as their addresses are the node's.
import fs from 'node:fs';
import type { BpfMap, Layout } from '../libbpf';
import type { Logger } from '../log';
import type { WorkloadResolver } from './resolver';

const REFRESH_MS = 2000;
/** how long a deleted pod's number keeps its names, for what still counts under it */
const FORGET_AFTER_MS = 15 * 60_000;

export interface PodName {
  namespace: string;
  pod: string;
}

/** The local IPv4 addresses in a /proc/PID/net/fib_trie, loopback left out. */
export function fibTrieAddresses(text: string): string[] {
  const found = new Set<string>();
  let last = '';
  for (const line of text.split('\n')) {
    const leaf = /\|-- (\d+\.\d+\.\d+\.\d+)$/.exec(line);
    if (leaf) last = leaf[1]!;
    else if (/\/32 host LOCAL/.test(line) && last && !last.startsWith('127.')) found.add(last);
  }
  return [...found];
}

/** The global-scope IPv6 addresses in a /proc/PID/net/if_inet6, as 32 hex digits. */
export function ifInet6Addresses(text: string): string[] {
  const found: string[] = [];
  for (const line of text.split('\n')) {
    const f = line.trim().split(/\s+/);
    if (f.length >= 6 && /^[0-9a-f]{32}$/.test(f[0]!) && f[3] === '00') found.push(f[0]!);
  }
  return found;
}

export class PodAddresses {
  private readonly numbers = new Map<string, number>();
  private readonly names = new Map<number, PodName & { seen: number }>();
  /** what the kernel map holds: key bytes (hex) to pod number */
  private held = new Map<string, number>();
  private next = 1;
  private changes = 0;
  private timer: NodeJS.Timeout | undefined;
  private readonly hostNetns: bigint | undefined;

  constructor(
    private readonly map: BpfMap,
    private readonly layout: Layout<string>,
    private readonly families: readonly string[],
    private readonly workloads: WorkloadResolver,
    private readonly log: Logger,
  ) {
    this.hostNetns = netnsOf(1);
  }

  start(): void {
    this.refresh();
    this.workloads.onChange(() => this.refresh());
    this.timer = setInterval(() => this.refresh(), REFRESH_MS);
    this.timer.unref();
  }

  close(): void {
    clearInterval(this.timer);
  }

  /** Changes whenever what pod() answers may have. */
  get version(): number {
    return this.changes;
  }

  /** The pod a number stands for. */
  pod(n: number): PodName | undefined {
    return n === 0 ? undefined : this.names.get(n);
  }

  refresh(): void {
    const now = Date.now();
    const want = new Map<string, number>();
    for (const p of this.workloads.pods()) {
      const netns = netnsOf(p.pid);
      if (netns === undefined || netns === this.hostNetns) continue;
      let n = this.numbers.get(p.podUid);
      if (n === undefined) {
        n = this.next++;
        this.numbers.set(p.podUid, n);
      }
      if (!this.names.has(n)) this.changes++;
      this.names.set(n, { namespace: p.namespace, pod: p.pod, seen: now });
      for (const key of this.keysOf(p.pid)) want.set(key, n);
    }
    for (const [key, n] of this.held) {
      if (want.get(key) === n) continue;
      this.map.delete(Buffer.from(key, 'hex'));
      this.held.delete(key);
    }
    const value = Buffer.alloc(4);
    for (const [key, n] of want) {
      if (this.held.get(key) === n) continue;
      value.writeUInt32LE(n);
      try {
        this.map.update(Buffer.from(key, 'hex'), value);
        this.held.set(key, n);
      } catch (err) {
        this.log.warn('cannot record a pod address: its connects get no peer labels', { err: (err as Error).message });
        break;
      }
    }
    for (const [n, name] of this.names) {
      if (now - name.seen <= FORGET_AFTER_MS) continue;
      this.names.delete(n);
      this.changes++;
      for (const [uid, m] of this.numbers) if (m === n) this.numbers.delete(uid);
    }
  }

  /** The map keys of a process's network namespace's addresses. */
  private keysOf(pid: number): string[] {
    const keys: string[] = [];
    const key = (family: string, bytes: Buffer) => {
      const k = Buffer.alloc(this.map.keySize);
      k.writeUInt8(this.families.indexOf(family), this.layout.offset('family'));
      bytes.copy(k, this.layout.offset('addr32'));
      keys.push(k.toString('hex'));
    };
    for (const a of fibTrieAddresses(readOr(`/proc/${pid}/net/fib_trie`))) key('ipv4', Buffer.from(a.split('.').map(Number)));
    for (const a of ifInet6Addresses(readOr(`/proc/${pid}/net/if_inet6`))) key('ipv6', Buffer.from(a, 'hex'));
    return keys;
  }
}

function readOr(file: string): string {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch {
    return '';
  }
}

function netnsOf(pid: number): bigint | undefined {
  try {
    return fs.statSync(`/proc/${pid}/ns/net`, { bigint: true }).ino;
  } catch {
    return undefined;
  }
}
