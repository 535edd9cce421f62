// SPDX-License-Identifier: Apache-2.0
// Sidecar latency: a client, a proxy named as the sidecar and an application,
// three processes on one host. The proxy waits 20 ms before it connects
// upstream; that delay lands in the forward histogram's bucket for exactly
// the connections made, whether the proxy accepts and connects on one thread
// or on two; a proxy that reuses one upstream connection is counted as such;
// and the spans of a forwarded connection are children of the inbound one.
import assert from 'node:assert/strict';
import { AgentProcess, runClient, startEchoServer, startServer } from '../helpers/agent';
import { RunningExporter } from '../helpers/exporter';
import { createNetns, type Netns } from '../helpers/netns';
import { OtlpReceiver } from '../helpers/otlp-receiver';
import { requireRoot } from '../helpers/privileges';
import type { Metrics } from '../helpers/prom-text';
import { assertSidecarTraces, buildSidecarProxy, startSidecarProxy } from '../helpers/sidecar-proxy';
import { Kind, vmlinuxBtf } from '../../src/libbpf';

const SIDECAR = { sidecar: 'sidecar-proxy' };
const LE_16MS = '0.016777216'; // 2^24 ns
const LE_33MS = '0.033554432'; // 2^25 ns
// reuse is seen where the kernel traces sends (tcp:tcp_sendmsg_locked, 6.2+)
const SEES_REUSE = vmlinuxBtf().find('btf_trace_tcp_sendmsg_locked', Kind.Typedef) !== undefined;

/** Cumulative bucket counts and the count a histogram gained since before. */
function gained(before: Metrics, m: Metrics, name: string): Record<string, number> {
  const was = before.buckets(name, SIDECAR);
  const now = m.buckets(name, SIDECAR);
  return {
    [LE_16MS]: now.get(LE_16MS)! - (was.get(LE_16MS) ?? 0),
    [LE_33MS]: now.get(LE_33MS)! - (was.get(LE_33MS) ?? 0),
    count: m.value(`${name}_count`, SIDECAR) - before.value(`${name}_count`, SIDECAR),
  };
}

describe('sidecar latency', function () {
  let ns: Netns;
  let receiver: OtlpReceiver;
  let exporter: RunningExporter;

  before(async function () {
    requireRoot();
    buildSidecarProxy();
    ns = createNetns('sidecar');
    receiver = await new OtlpReceiver().start();
    exporter = await new RunningExporter(['--netns', ns.path, '--sidecar-comm', 'sidecar-proxy', '--otlp-endpoint', receiver.endpoint], {
      OTEL_BSP_SCHEDULE_DELAY: '100',
    }).ready();
  });

  after(async function () {
    await exporter?.stop();
    await receiver?.stop();
    await ns?.destroy();
  });

  for (const mode of ['loop', 'threads'] as const) {
    it(`times the proxy's 20 ms before it connects upstream, and the application's accept, when the proxy ${mode === 'loop' ? 'accepts and connects on one thread' : 'connects on a thread of its own'}`, async function () {
      const n = 5;
      const app = await startServer(ns, { host: '127.0.0.1', port: 0, down: 300 });
      const proxy = await startSidecarProxy(ns, { mode, delayMs: 20, upstreamPort: app.port });
      try {
        const before = await exporter.scrape();
        const spansBefore = receiver.spans.length;
        const { results } = await runClient(ns, { host: '127.0.0.1', port: proxy.port, connections: Array(n).fill({ up: 100 }) });
        assert.deepEqual(
          results.map((r) => r.received),
          Array(n).fill(300),
        );
        const m = await exporter.settle((x) => gained(before, x, 'bpfnet_sidecar_upstream_connect_seconds').count === n);
        // 20 ms and a little: above 2^24 ns, below 2^25 ns
        assert.deepEqual(gained(before, m, 'bpfnet_sidecar_forward_seconds'), { [LE_16MS]: 0, [LE_33MS]: n, count: n });
        assert.deepEqual(gained(before, m, 'bpfnet_sidecar_upstream_connect_seconds'), { [LE_16MS]: n, [LE_33MS]: n, count: n });
        assert.equal(m.value('bpfnet_sidecar_reused_connections_total', SIDECAR) - before.value('bpfnet_sidecar_reused_connections_total', SIDECAR), 0);

        // per forwarded connection: the client's span, and a trace of three:
        // the proxy's inbound span, parent of its upstream span and of the
        // application's accepted span
        const spans = (await receiver.waitFor((s) => s.length >= spansBefore + 4 * n)).slice(spansBefore);
        for (const { parent, out } of assertSidecarTraces(spans, proxy.port, 'sidecar-proxy', n)) {
          assert.ok(out.startNs - parent.startNs >= 20_000_000n, 'the upstream connect started after the 20 ms wait');
        }
        assert.deepEqual(receiver.errors, []);
      } finally {
        proxy.stop();
        await app.stop();
      }
    });
  }

  it(`counts inbound connections forwarded over a reused upstream connection${SEES_REUSE ? '' : ' (none on this kernel: it does not trace sends)'}`, async function () {
    const n = 4;
    const app = await startEchoServer(ns, { role: 'echo', host: '127.0.0.1', port: 0 });
    const proxy = await startSidecarProxy(ns, { mode: 'reuse', delayMs: 20, upstreamPort: app.port });
    try {
      const before = await exporter.scrape();
      const { results } = await runClient(ns, { host: '127.0.0.1', port: proxy.port, connections: Array(n).fill({ up: 100 }) });
      assert.deepEqual(
        results.map((r) => r.received),
        Array(n).fill(100),
      );
      const reused = (x: Metrics) =>
        x.value('bpfnet_sidecar_reused_connections_total', SIDECAR) - before.value('bpfnet_sidecar_reused_connections_total', SIDECAR);
      const m = await exporter.settle((x) => reused(x) === (SEES_REUSE ? n - 1 : 0));
      // the first request made the upstream connection; the others rode on it
      assert.equal(reused(m), SEES_REUSE ? n - 1 : 0);
      assert.equal(gained(before, m, 'bpfnet_sidecar_forward_seconds').count, 1);
      assert.equal(gained(before, m, 'bpfnet_sidecar_upstream_connect_seconds').count, 1);
    } finally {
      proxy.stop();
      await (app as AgentProcess & { stop(): Promise<void> }).stop();
    }
  });
});
