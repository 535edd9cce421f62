// SPDX-License-Identifier: Apache-2.0
// The test's sidecar proxy (sidecar-proxy.c): accepts, waits, connects to an
// upstream and forwards, in a shape (-m loop: one thread, accept and connect
// on it; threads: a thread per connection; reuse: one upstream connection
// for every inbound one; connect-first: a thread per connection that
// connects upstream before it reads; pool: the same on threads started
// beforehand). Built once per run with clang.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import type { Netns } from './netns';
import type { ReceivedSpan } from './otlp-receiver';

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

const SERVER = 2; // OTLP span kinds
const CLIENT = 3;

/** Asserts the traces of n connections a sidecar (command comm) forwarded
 * from its port to the test server: each inbound span a root, parent of the
 * proxy's upstream span and of the application's accepted span, in its
 * trace, the two legs one connection seen from each end. Returns each
 * inbound span with its upstream child. */
export function assertSidecarTraces(spans: ReceivedSpan[], port: number, comm: string, n: number): { parent: ReceivedSpan; out: ReceivedSpan }[] {
  const inbound = spans.filter((s) => s.kind === SERVER && s.attributes['network.local.port'] === port);
  assert.equal(inbound.length, n);
  return inbound.map((parent) => {
    assert.equal(parent.parentSpanId, '');
    const children = spans.filter((s) => s.parentSpanId === parent.spanId);
    assert.deepEqual(children.map((s) => [s.kind, s.traceId, s.attributes['process.executable.name']]).sort(), [
      [SERVER, parent.traceId, 'test-server'],
      [CLIENT, parent.traceId, comm],
    ]);
    const [out, accepted] = [children.find((s) => s.kind === CLIENT)!, children.find((s) => s.kind === SERVER)!];
    assert.deepEqual(
      [out.attributes['network.local.port'], out.attributes['network.peer.port']],
      [accepted.attributes['network.peer.port'], accepted.attributes['network.local.port']],
    );
    return { parent, out };
  });
}
