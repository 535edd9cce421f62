// SPDX-License-Identifier: Apache-2.0
// The test's sidecar proxy (sidecar-proxy.c): accepts, waits, connects to an
// upstream and forwards, in a shape (-m loop: one thread, accept and connect
// on it; threads: a thread per connection; reuse: one upstream connection
// for every inbound one; connect-first: a thread per connection that
// connects upstream before it reads; pool: the same on threads started
// beforehand). Built once per run with clang.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import type { Netns } from './netns';

const ROOT = path.resolve(__dirname, '..', '..', '..', '..');
const PROXY = path.join(ROOT, 'build', 'test-bin', 'sidecar-proxy');

/** Compiles the proxy (its command name, as the kernel sees it, is "sidecar-proxy"). */
export function buildSidecarProxy(): void {
  fs.mkdirSync(path.dirname(PROXY), { recursive: true });
  execFileSync('clang', ['-O2', '-Wall', '-pthread', '-I', path.join(ROOT, 'bench'), '-o', PROXY, path.join(ROOT, 'test', 'helpers', 'sidecar-proxy.c')]);
}

/** The proxy inside ns; resolves with its port once it listens. */
export async function startSidecarProxy(
  ns: Netns,
  opts: {
    mode: 'loop' | 'threads' | 'reuse' | 'connect-first' | 'pool';
    delayMs: number;
    upstreamPort: number;
    /** ask each connection's original destination, and forward to its port */
    originalDst?: boolean;
  },
): Promise<{ port: number; stop: () => void }> {
  const args = ['-m', opts.mode, '-d', String(opts.delayMs), '-u', String(opts.upstreamPort)];
  const child = ns.spawn(PROXY, opts.originalDst ? [...args, '-o'] : args);
  const port = await new Promise<number>((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (d) => {
      out += d;
      const m = /^ready (\d+)$/m.exec(out);
      if (m) resolve(Number(m[1]));
    });
    child.on('exit', (code) => reject(new Error(`sidecar-proxy exited ${code}`)));
  });
  return { port, stop: () => child.kill('SIGKILL') };
}
