// SPDX-License-Identifier: Apache-2.0
// Connection spans against a real OTLP/HTTP receiver, and a real OTLP/gRPC
// one, that check every request against the official OTLP definitions: one span per connection
// with the exact attributes and payload bytes, failed connects as errors,
// times in the right order and in the right wall-clock window; no span work
// without an endpoint; and a collector that goes down and comes back costs
// a bounded queue and counted drops, never /metrics.
import assert from 'node:assert/strict';
import { runClient, startClient, startServer } from '../helpers/agent';
import { RunningExporter, sleep } from '../helpers/exporter';
import { createNetns, type Netns } from '../helpers/netns';
import { GrpcOtlpReceiver } from '../helpers/otlp-grpc-receiver';
import { OtlpReceiver, type ReceivedSpan } from '../helpers/otlp-receiver';
import { requireRoot } from '../helpers/privileges';
import type { Metrics } from '../helpers/prom-text';

const CLIENT = 3; // SpanKind in OTLP: SPAN_KIND_SERVER = 2, SPAN_KIND_CLIENT = 3
const SERVER = 2;
const STATUS_ERROR = 2;
const FAST_EXPORT = { OTEL_BSP_SCHEDULE_DELAY: '100' };

const wallNs = () => BigInt(Date.now()) * 1_000_000n;
const spanCounts = (m: Metrics) => ({
  exported: m.value('bpfnet_spans_exported_total'),
  dropped: m.sum('bpfnet_spans_dropped_total'),
  queued: m.value('bpfnet_spans_queued'),
});

/** One connection made by a client agent; its local port and pid. */
async function connectOnce(ns: Netns, host: string, port: number, up: number): Promise<{ pid: number; localPort: number }> {
  const c = startClient(ns, { host, port, connections: [{ up }] });
  const started = await c.waitFor('started');
  await c.waitFor('done');
  await c.exited;
  return { pid: started.pid as number, localPort: c.all('connected')[0]!.localPort as number };
}

describe('connection spans', function () {
  let ns: Netns;
  let receiver: OtlpReceiver;
  let grpcReceiver: GrpcOtlpReceiver;

  before(async function () {
    requireRoot();
    ns = createNetns('spans');
    receiver = await new OtlpReceiver().start();
    grpcReceiver = await new GrpcOtlpReceiver().start();
  });

  after(async function () {
    await receiver?.stop();
    await grpcReceiver?.stop();
    await ns?.destroy();
  });

  for (const [protocol, contentType] of [
    ['http/protobuf', 'application/x-protobuf'],
    ['http/json', 'application/json'],
    ['grpc', 'application/grpc'],
  ] as const) {
    it(`sends one span per connection with exact attributes and bytes, and failed connects as errors (${protocol})`, async function () {
      const env = protocol === 'http/protobuf' ? FAST_EXPORT : { ...FAST_EXPORT, OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: protocol };
      const rx = protocol === 'grpc' ? grpcReceiver : receiver;
      rx.spans.length = 0;
      rx.contentTypes.clear();
      const exporter = await new RunningExporter(['--netns', ns.path, '--otlp-endpoint', rx.endpoint], env).ready();
      try {
        const t0 = wallNs();
        const v4 = await startServer(ns, { host: '127.0.0.1', port: 0, down: 5000 });
        const c4 = await connectOnce(ns, '127.0.0.1', v4.port, 1000);
        const v6 = await startServer(ns, { host: '::1', port: 0, down: 10 });
        const c6 = await connectOnce(ns, '::1', v6.port, 20);
        const refused = await runClient(ns, { host: '127.0.0.1', port: 9, connections: [{ up: 1 }] });
        await v4.stop();
        await v6.stop();
        const spans = await rx.waitFor((s) => s.length >= 5);
        const t1 = wallNs();
        await sleep(300); // nothing more comes
        assert.equal(rx.spans.length, 5, JSON.stringify(rx.spans.map((s) => [s.name, s.attributes['network.local.port']])));
        assert.deepEqual(rx.errors, []);

        // (an IPv4 and an IPv6 listener may have the same port number)
        const find = (kind: number, family: string, localPort: number) => {
          const found = spans.filter((s) => s.kind === kind && s.attributes['network.type'] === family && s.attributes['network.local.port'] === localPort);
          assert.equal(found.length, 1, `one ${family} span of kind ${kind} from port ${localPort}`);
          return found[0]!;
        };
        const expect = (s: ReceivedSpan, want: Record<string, unknown>) => {
          for (const [k, v] of Object.entries(want)) assert.deepEqual(s.attributes[k], v, k);
        };
        for (const [family, addr, server, client, up, down] of [
          ['ipv4', '127.0.0.1', v4, c4, 1000, 5000],
          ['ipv6', '::1', v6, c6, 20, 10],
        ] as const) {
          const cs = find(CLIENT, family, client.localPort);
          const ss = find(SERVER, family, server.port);
          const common = {
            'network.transport': 'tcp',
            'network.type': family,
            'network.local.address': addr,
            'network.peer.address': addr,
            'bpfnet.tcp.retransmits': 0,
          };
          // the agents name themselves (process.title): the kernel's comm
          expect(cs, {
            ...common,
            'network.peer.port': server.port,
            'process.pid': client.pid,
            'process.executable.name': 'test-client',
            'bpfnet.tcp.sent_bytes': up,
            'bpfnet.tcp.received_bytes': down,
          });
          expect(ss, {
            ...common,
            'network.peer.port': client.localPort,
            'process.pid': server.pid,
            'process.executable.name': 'test-server',
            'bpfnet.tcp.sent_bytes': down,
            'bpfnet.tcp.received_bytes': up,
          });
          assert.deepEqual([cs.name, ss.name], ['tcp connect', 'tcp accept']);
          for (const s of [cs, ss]) {
            assert.equal(s.parentSpanId, '');
            assert.equal(s.status.code, 0);
            assert.ok((s.attributes['bpfnet.tcp.srtt'] as number) > 0);
            // in order, inside the test's wall-clock window
            const [est, fin] = [s.events.find((e) => e.name === 'tcp.established')!, s.events.find((e) => e.name === 'tcp.fin')!];
            assert.ok(
              t0 - 1_000_000n <= s.startNs && s.startNs <= est.timeNs && est.timeNs <= fin.timeNs && fin.timeNs <= s.endNs && s.endNs <= t1 + 1_000_000n,
              `${s.name}: ${[t0, s.startNs, est.timeNs, fin.timeNs, s.endNs, t1].join(' <= ')}`,
            );
            assert.equal(est.attributes['bpfnet.tcp.handshake.duration'], Number(est.timeNs - s.startNs) / 1e9);
          }
          // the client sends its FIN first; the server answers after it
          assert.deepEqual(
            [
              cs.events.find((e) => e.name === 'tcp.fin')!.attributes['bpfnet.tcp.fin.from'],
              ss.events.find((e) => e.name === 'tcp.fin')!.attributes['bpfnet.tcp.fin.from'],
            ],
            ['local', 'peer'],
          );
          assert.notEqual(cs.traceId, ss.traceId);
        }
        const failed = spans.filter((s) => s.status.code === STATUS_ERROR);
        assert.equal(failed.length, 1);
        expect(failed[0]!, {
          'network.peer.port': 9,
          'process.pid': refused.pid,
          'error.type': 'refused',
          'bpfnet.tcp.connect.result': 'refused',
          'bpfnet.tcp.sent_bytes': 0,
        });
        assert.deepEqual([failed[0]!.kind, failed[0]!.name, failed[0]!.events.map((e) => e.name)], [CLIENT, 'tcp connect', []]);
        assert.equal(spans[0]!.resource['service.name'], 'bpfnet-exporter');
        // over gRPC: uncompressed, as OTEL_EXPORTER_OTLP_COMPRESSION defaults to
        if (protocol === 'grpc') assert.deepEqual([...grpcReceiver.encodings], ['identity']);
        else assert.deepEqual([...rx.contentTypes], [contentType]);

        const m = await exporter.settle((x) => spanCounts(x).exported === 5);
        assert.deepEqual(spanCounts(m), { exported: 5, dropped: 0, queued: 0 });
        assert.equal(m.sum('bpfnet_events_lost_total'), 0);
      } finally {
        await exporter.stop();
      }
    });
  }

  it('does no span work without an endpoint', async function () {
    const exporter = await new RunningExporter(['--netns', ns.path]).ready();
    try {
      const server = await startServer(ns, { host: '127.0.0.1', port: 0, down: 1 });
      await runClient(ns, { host: '127.0.0.1', port: server.port, connections: [{ up: 1 }] });
      await server.stop();
      const m = await exporter.settle((x) => x.sum('bpfnet_tcp_closes_total') === 2);
      assert.equal(m.sum('bpfnet_tcp_closes_total'), 2);
      assert.deepEqual(
        m.samples.filter((s) => /^bpfnet_(spans|events)_/.test(s.name)),
        [],
      );
      assert.doesNotMatch(exporter.stderr, /tracing/);
    } finally {
      await exporter.stop();
    }
  });

  it('samples whole traces by --trace-sample-ratio or OTEL_TRACES_SAMPLER: none at 0, about half at 0.5', async function () {
    const server = await startServer(ns, { host: '127.0.0.1', port: 0, down: 1 });
    try {
      for (const [args, env, n, low, high] of [
        [['--trace-sample-ratio', '0'], {}, 20, 0, 0],
        [[], { OTEL_TRACES_SAMPLER: 'parentbased_traceidratio', OTEL_TRACES_SAMPLER_ARG: '0' }, 20, 0, 0],
        [['--trace-sample-ratio', '0.5'], {}, 200, 100, 300],
      ] as const) {
        const exporter = await new RunningExporter(['--netns', ns.path, '--otlp-endpoint', receiver.endpoint, ...args], { ...FAST_EXPORT, ...env }).ready();
        try {
          const before = receiver.spans.length;
          await runClient(ns, { host: '127.0.0.1', port: server.port, connections: Array(n).fill({ up: 1 }) });
          const m = await exporter.settle((x) => x.sum('bpfnet_tcp_closes_total') === 2 * n);
          await sleep(500); // what is sampled is exported by now
          const sent = (await exporter.scrape()).value('bpfnet_spans_exported_total');
          assert.equal(m.sum('bpfnet_tcp_closes_total'), 2 * n);
          assert.ok(sent >= low && sent <= high, `${args.join(' ')} ${JSON.stringify(env)}: ${sent} of ${2 * n} spans sent`);
          assert.equal(receiver.spans.length - before, sent);
        } finally {
          await exporter.stop();
        }
      }
    } finally {
      await server.stop();
    }
  });

  it('keeps serving /metrics while the collector is down, within a bounded queue, counts every span it drops, and recovers', async function () {
    const queue = 50;
    const batch = 10;
    const inFlight = 4; // exports at once: their spans are counted as queued too
    const exporter = await new RunningExporter(['--netns', ns.path, '--otlp-endpoint', receiver.endpoint], {
      ...FAST_EXPORT,
      OTEL_BSP_MAX_QUEUE_SIZE: String(queue),
      OTEL_BSP_MAX_EXPORT_BATCH_SIZE: String(batch),
      OTEL_EXPORTER_OTLP_TIMEOUT: '1000',
    }).ready();
    try {
      await receiver.stop();
      const before = receiver.spans.length;
      const server = await startServer(ns, { host: '127.0.0.1', port: 0, down: 100 });
      const n = 150;
      let maxQueued = 0;
      const clients = runClient(ns, { host: '127.0.0.1', port: server.port, connections: Array(n).fill({ up: 100 }) });
      for (let done = false; !done;) {
        done = await Promise.race([clients.then(() => true), sleep(50).then(() => false)]);
        maxQueued = Math.max(maxQueued, (await exporter.scrape()).value('bpfnet_spans_queued'));
      }
      // every span is accounted for: exported, or dropped for a reason
      const down = await exporter.settle((x) => spanCounts(x).dropped === 2 * n && spanCounts(x).queued === 0, 30_000);
      assert.deepEqual(spanCounts(down), { exported: 0, dropped: 2 * n, queued: 0 });
      assert.ok(down.value('bpfnet_spans_dropped_total', { reason: 'queue_full' }) > 0, 'the queue filled');
      assert.ok(maxQueued <= queue + inFlight * batch, `queued ${maxQueued} spans, at most ${queue + inFlight * batch}`);
      assert.equal(receiver.spans.length, before);

      await receiver.start();
      await runClient(ns, { host: '127.0.0.1', port: server.port, connections: Array(3).fill({ up: 100 }) });
      await server.stop();
      await receiver.waitFor((s) => s.length === before + 6);
      const up = await exporter.settle((x) => spanCounts(x).exported === 6);
      assert.deepEqual(spanCounts(up), { exported: 6, dropped: 2 * n, queued: 0 });
      assert.deepEqual(receiver.errors, []);
    } finally {
      await exporter.stop();
      await receiver.start().catch(() => {});
    }
  });

  it('loses no span of a 2,000-connection burst with a healthy collector, at the default queue and batch settings', async function () {
    const exporter = await new RunningExporter(['--netns', ns.path, '--otlp-endpoint', receiver.endpoint]).ready();
    try {
      const server = await startServer(ns, { host: '127.0.0.1', port: 0, down: 1, backlog: 4096 });
      const before = receiver.spans.length;
      const kernel = () => {
        const c = ns.tcpCounters();
        return c.ActiveOpens + c.PassiveOpens;
      };
      const opened = kernel();
      // every connection at once: a client and a server span each, closing together
      const client = await runClient(ns, { host: '127.0.0.1', port: server.port, parallel: true, connections: Array(2000).fill({ up: 1 }) });
      assert.equal(client.results.filter((r) => r.ok).length, 2000);
      await server.stop();
      const spans = kernel() - opened;
      assert.equal(spans, 4000);
      const m = await exporter.settle((x) => spanCounts(x).exported + spanCounts(x).dropped === spans && spanCounts(x).queued === 0, 30_000);
      assert.deepEqual(
        { ...spanCounts(m), lost: m.sum('bpfnet_events_lost_total'), received: receiver.spans.length - before },
        { exported: spans, dropped: 0, queued: 0, lost: 0, received: spans },
      );
      assert.deepEqual(receiver.errors, []);
    } finally {
      await exporter.stop();
    }
  });

  it('counts every event the kernel could not queue while the exporter was stopped: spans sent plus events lost is every connection', async function () {
    const exporter = await new RunningExporter(['--netns', ns.path, '--otlp-endpoint', receiver.endpoint, '--event-ring-bytes', '4096'], FAST_EXPORT).ready();
    try {
      const server = await startServer(ns, { host: '127.0.0.1', port: 0, down: 10 });
      const before = receiver.spans.length;
      const n = 60;
      // a stopped exporter reads nothing: a one-page ring buffer holds a few
      // dozen events, the kernel counts the rest as lost
      process.kill(exporter.pid, 'SIGSTOP');
      try {
        await runClient(ns, { host: '127.0.0.1', port: server.port, connections: Array(n).fill({ up: 10 }) });
      } finally {
        process.kill(exporter.pid, 'SIGCONT');
      }
      await server.stop();
      const lost = (x: Metrics) => x.value('bpfnet_events_lost_total', { probe: 'close' });
      const m = await exporter.settle((x) => spanCounts(x).exported + lost(x) === 2 * n && spanCounts(x).queued === 0);
      assert.ok(lost(m) > 0 && spanCounts(m).exported > 0, `lost ${lost(m)}, exported ${spanCounts(m).exported}`);
      assert.equal(spanCounts(m).exported + lost(m), 2 * n);
      assert.equal(spanCounts(m).dropped, 0);
      await receiver.waitFor((s) => s.length === before + spanCounts(m).exported);
    } finally {
      await exporter.stop();
    }
  });
});
