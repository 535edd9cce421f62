// SPDX-License-Identifier: Apache-2.0
// Shared by the socket redirect tests: the exporter running the redirect on a
// test cgroup, loopback's byte counter, and the check that streams came back whole.
import assert from 'node:assert/strict';
import type { TestCgroup } from './cgroup';
import { RunningExporter } from './exporter';
import type { Netns } from './netns';
import type { AgentProcess, StreamResult } from './agent';
import type { Metrics } from './prom-text';

/** The exporter running only the redirect, on cgroup. */
export function startRedirect(cgroup: TestCgroup, args: string[] = []): Promise<RunningExporter> {
  return new RunningExporter(['redirect', '--redirect-cgroup', cgroup.path, '--enable-bpf-stats', ...args]).ready();
}

/** Bytes loopback carried in ns: the stack's own count. */
export function loBytes(ns: Netns): number {
  return Number(ns.run('cat', '/sys/class/net/lo/statistics/tx_bytes'));
}

/** Messages that took the stack, of one reason and family, or all. */
export const fallbacks = (m: Metrics, reason?: string, family?: string) =>
  m.sum('bpfnet_redirect_fallbacks_total', { ...(reason ? { reason } : {}), ...(family ? { family } : {}) });

/** Every stream came back whole: what each side hashed is what the other
 * sent; and each was `bytes` long (0: lengths differ). */
export function assertWhole(results: StreamResult[], served: Served[], bytes: number): void {
  assert.equal(results.length, served.length);
  for (const r of results) {
    assert.equal(r.error, undefined);
    assert.deepEqual([r.received, r.receivedSha256], [r.sent, r.sentSha256]);
    if (bytes) assert.equal(r.sent, bytes);
  }
  // the server hashed what it received: the same streams, in some order
  assert.deepEqual(served.map((s) => s.sha256).sort(), results.map((r) => r.sentSha256).sort());
}

export interface Served {
  received: number;
  sha256?: string;
  error?: string;
}

/** What an echo server reported, one entry per connection it served, from the nth on. */
export function servedBy(server: AgentProcess, from = 0): Served[] {
  return server.all('served').slice(from) as unknown as Served[];
}
