// SPDX-License-Identifier: Apache-2.0
// bench/slow-peer.c for tests: a reader that reads slowly or not at all,
// and a writer that writes as fast as it can, run in a namespace and cgroup
// a test made; how far the writer got ahead, and both ends' hashes.
import { execFileSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { onLines } from './agent';
import type { TestCgroup } from './cgroup';
import { sleep, within } from './exporter';
import type { Netns } from './netns';

const ROOT = path.resolve(__dirname, '..', '..', '..', '..');
const BIN = path.join(ROOT, 'build', 'test-bin', 'slow-peer');

/** Compiles slow-peer (with OpenSSL's libcrypto for SHA-256). */
export function buildSlowPeer(): void {
  fs.mkdirSync(path.dirname(BIN), { recursive: true });
  execFileSync('clang', ['-O2', '-Wall', '-pthread', '-I', path.join(ROOT, 'bench'), '-o', BIN, path.join(ROOT, 'bench', 'slow-peer.c'), '-lcrypto']);
}

/** A line of slow-peer's output, split on spaces. */
type Line = string[];

/** A slow-peer process; its output lines as they come. */
class Peer {
  readonly lines: Line[] = [];
  private stderr = '';
  readonly exited: Promise<number | null>;

  constructor(readonly child: ChildProcess) {
    onLines(child, (line) => this.lines.push(line.split(' ')));
    child.stderr!.on('data', (d) => (this.stderr += d));
    this.exited = new Promise((resolve) => child.on('exit', (code) => resolve(code)));
  }

  /** The first line starting with word, once it is there. */
  async line(word: string, timeoutMs = 60_000): Promise<Line> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const l = this.lines.find((x) => x[0] === word);
      if (l) return l;
      if (this.child.exitCode !== null) throw new Error(`slow-peer exited (${this.child.exitCode}) before "${word}": ${this.stderr}`);
      if (Date.now() > deadline) throw new Error(`slow-peer printed no "${word}" in time: ${this.stderr}`);
      await sleep(20);
    }
  }

  all(word: string): Line[] {
    return this.lines.filter((l) => l[0] === word);
  }

  /** [ms, bytes] of every progress line ("sent" or "got"). */
  progress(word: 'sent' | 'got'): [number, number][] {
    return this.all(word).map((l) => [Number(l[1]), Number(l[2])]);
  }

  kill(): void {
    this.child.kill('SIGKILL');
  }
}

export class SlowReader extends Peer {
  port = 0;
  private going = false;

  /** Starts reading (it read nothing until now). */
  go(): void {
    if (!this.going) this.child.stdin!.write('go\n');
    this.going = true;
  }

  /** Waits until it has read bytes in all (from its progress lines). */
  async read(bytes: number, timeoutMs = 120_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const p = this.progress('got');
      const got = p.length ? p[p.length - 1]![1] : 0;
      if (got >= bytes) return;
      if (this.child.exitCode !== null || Date.now() > deadline) throw new Error(`the reader read ${got} of ${bytes} bytes`);
      await sleep(50);
    }
  }

  /** Per connection, by the writer's port: bytes read and their SHA-256. */
  async results(timeoutMs = 300_000): Promise<Map<number, { bytes: number; sha256: string }>> {
    const code = await within(this.exited, timeoutMs);
    if (code !== 0)
      throw new Error(
        `slow-peer read ended with ${code}: ${this.lines
          .map((l) => l.join(' '))
          .slice(-5)
          .join('; ')}`,
      );
    return new Map(this.all('read').map((l) => [Number(l[1]), { bytes: Number(l[2]), sha256: l[3]! }]));
  }
}

export class FastWriter extends Peer {
  /** Lets a writer started with hold send its last 64 KiB (once it holds). */
  async release(): Promise<void> {
    await this.line('holding');
    this.child.stdin!.write('go\n');
  }

  /** The bytes sent so far, from the last progress line. */
  sent(): number {
    const p = this.progress('sent');
    return p.length ? p[p.length - 1]![1] : 0;
  }

  /** Waits until the writer has sent nothing new for quietMs: it is blocked. */
  async blocked(quietMs = 1500, timeoutMs = 60_000): Promise<number> {
    await this.line('connected');
    const deadline = Date.now() + timeoutMs;
    let last = -1;
    let since = Date.now();
    for (;;) {
      const now = this.sent();
      if (now !== last) {
        last = now;
        since = Date.now();
      } else if (last > 0 && Date.now() - since >= quietMs) {
        return last;
      }
      if (this.all('error').length)
        throw new Error(
          `the writer failed: ${this.all('error')
            .map((l) => l.join(' '))
            .join('; ')}`,
        );
      if (Date.now() > deadline) throw new Error(`the writer never stopped: ${last} bytes sent`);
      await sleep(50);
    }
  }

  /** Per connection, by its port: bytes written and their SHA-256, and any failed calls. */
  async results(timeoutMs = 300_000): Promise<{ wrote: Map<number, { bytes: number; sha256: string }>; errors: string[] }> {
    await within(this.exited, timeoutMs);
    return {
      wrote: new Map(this.all('wrote').map((l) => [Number(l[1]), { bytes: Number(l[2]), sha256: l[3]! }])),
      errors: this.all('error').map((l) => l.join(' ')),
    };
  }
}

/** A reader in ns and cgroup, listening on addr; resolves once it listens. */
export async function startSlowReader(
  ns: Netns,
  cg: TestCgroup,
  opts: { addr?: string; conns?: number; rate?: number; now?: boolean } = {},
): Promise<SlowReader> {
  const args = ['read', '-a', opts.addr ?? '127.0.0.1', '-n', String(opts.conns ?? 1), '-r', String(opts.rate ?? 0)];
  if (opts.now) args.push('-g');
  const r = new SlowReader(ns.spawn(BIN, args, cg));
  r.port = Number((await r.line('ready'))[1]);
  return r;
}

/** A writer in ns and cgroup: conns connections to port, bytes each. */
export function startFastWriter(
  ns: Netns,
  cg: TestCgroup,
  opts: { addr?: string; port: number; conns?: number; bytes: number; nonBlocking?: boolean; hold?: boolean },
): FastWriter {
  const args = ['write', '-a', opts.addr ?? '127.0.0.1', '-p', String(opts.port), '-n', String(opts.conns ?? 1), '-B', String(opts.bytes)];
  if (opts.nonBlocking) args.push('-N');
  if (opts.hold) args.push('-H');
  return new FastWriter(ns.spawn(BIN, args, cg));
}

/** The writer's send() size. */
export const CHUNK = 64 * 1024;

export const PAGE = Number(execFileSync('getconf', ['PAGESIZE'], { encoding: 'utf8' }));

/** TCP memory of the host now, in bytes (/proc/net/sockstat counts pages). */
export function tcpMemory(): number {
  const m = /^TCP:.* mem (\d+)/m.exec(fs.readFileSync('/proc/net/sockstat', 'utf8'));
  if (!m) throw new Error('no TCP mem in /proc/net/sockstat');
  return Number(m[1]) * PAGE;
}
