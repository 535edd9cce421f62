// SPDX-License-Identifier: Apache-2.0
// Spans over OTLP/gRPC, against a real gRPC server (@grpc/grpc-js) that
// decodes every call with the official OTLP definitions: headers from
// OTEL_EXPORTER_OTLP_HEADERS arrive as call metadata, gzip compression is
// what the calls carry, a collector answering UNAVAILABLE or down at the
// start costs counted drops and a logged reason, never the exporter, and
// a stop finishes in moments whatever the collector does. Over TLS, the CA
// and client certificate of OTEL_EXPORTER_OTLP_(CLIENT_)CERTIFICATE are
// what the connection uses, over gRPC and over HTTP alike.
import assert from 'node:assert/strict';
import { status } from '@grpc/grpc-js';
import { runClient, startServer } from '../helpers/agent';
import { logFields, RunningExporter, sleep } from '../helpers/exporter';
import { createNetns, type Netns } from '../helpers/netns';
import { makeCerts, type TestCerts } from '../helpers/certs';
import { GrpcOtlpReceiver } from '../helpers/otlp-grpc-receiver';
import { OtlpReceiver } from '../helpers/otlp-receiver';
import { requireRoot } from '../helpers/privileges';
import type { Metrics } from '../helpers/prom-text';

const GRPC = { OTEL_EXPORTER_OTLP_PROTOCOL: 'grpc', OTEL_BSP_SCHEDULE_DELAY: '50' };

const spanCounts = (m: Metrics) => ({
  exported: m.value('bpfnet_spans_exported_total'),
  failed: m.value('bpfnet_spans_dropped_total', { reason: 'export_failed' }),
  dropped: m.sum('bpfnet_spans_dropped_total'),
  queued: m.value('bpfnet_spans_queued'),
});

describe('connection spans over OTLP/gRPC', function () {
  let ns: Netns;
  let receiver: GrpcOtlpReceiver;

  before(async function () {
    requireRoot();
    ns = createNetns('grpc');
    receiver = await new GrpcOtlpReceiver().start();
  });

  after(async function () {
    await receiver?.stop();
    await ns?.destroy();
  });

  afterEach(async function () {
    receiver.grpcFault = undefined;
    receiver.spans.length = 0;
    receiver.calls.length = 0;
    receiver.encodings.clear();
    receiver.errors.length = 0;
    // a fresh server on the same port: no call of a test lingers into the next
    await receiver.stop();
    await receiver.start();
  });

  /** n connections of the agents in the test's namespace: 2n spans. */
  async function connections(n: number): Promise<void> {
    const server = await startServer(ns, { host: '127.0.0.1', port: 0, down: 1 });
    await runClient(ns, { host: '127.0.0.1', port: server.port, connections: Array(n).fill({ up: 1 }) });
    await server.stop();
  }

  it('sends OTEL_EXPORTER_OTLP_(TRACES_)HEADERS as call metadata and gzips the calls, to a host:port endpoint made plain by OTEL_EXPORTER_OTLP_INSECURE', async function () {
    const exporter = await new RunningExporter(['--netns', ns.path], {
      ...GRPC,
      OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: `127.0.0.1:${receiver.port}`,
      OTEL_EXPORTER_OTLP_INSECURE: 'true',
      OTEL_EXPORTER_OTLP_HEADERS: 'authorization=Bearer%20s3cr3t,x-tenant=general',
      OTEL_EXPORTER_OTLP_TRACES_HEADERS: 'x-tenant=traces',
      OTEL_EXPORTER_OTLP_COMPRESSION: 'gzip',
    }).ready();
    try {
      await connections(3);
      await receiver.waitFor((s) => s.length >= 6);
      const m = await exporter.settle((x) => spanCounts(x).exported === 6);
      assert.deepEqual(spanCounts(m), { exported: 6, failed: 0, dropped: 0, queued: 0 });
    } finally {
      assert.equal((await exporter.stop()).code, 0);
    }
    assert.equal(receiver.spans.length, 6);
    assert.deepEqual(receiver.errors, []);
    assert.deepEqual(receiver.spans.map((s) => s.name).sort(), ['tcp accept', 'tcp accept', 'tcp accept', 'tcp connect', 'tcp connect', 'tcp connect']);
    assert.ok(receiver.calls.length >= 1);
    for (const md of receiver.calls) {
      assert.deepEqual([md.authorization, md['x-tenant']], [['Bearer s3cr3t'], ['traces']]);
      assert.match(md['user-agent']![0]!, /^OTel-OTLP-Exporter-JavaScript\/0\.301\.\d+ grpc-node-js\//);
    }
    assert.deepEqual([...receiver.encodings], ['gzip']);
    assert.match(exporter.stderr, /msg="sending connection spans" to=http:\/\/127\.0\.0\.1:\d+\/ protocol=grpc /);
    assert.doesNotMatch(exporter.stderr, /s3cr3t/);
  });

  it('counts every span of calls answered UNAVAILABLE as export_failed, and logs the status', async function () {
    receiver.grpcFault = { code: status.UNAVAILABLE, details: 'collector overloaded' };
    const exporter = await new RunningExporter(['--netns', ns.path, '--otlp-endpoint', receiver.endpoint], GRPC).ready();
    const n = 20;
    try {
      await connections(n);
      const m = await exporter.settle((x) => spanCounts(x).failed === 2 * n && spanCounts(x).queued === 0, 20_000);
      assert.deepEqual(spanCounts(m), { exported: 0, failed: 2 * n, dropped: 2 * n, queued: 0 });
    } finally {
      assert.equal((await exporter.stop()).code, 0);
    }
    assert.ok(receiver.requests >= 1);
    assert.deepEqual(receiver.spans, []);
    const first = exporter.stderr.split('\n').find((l) => l.includes('msg="span export failed'));
    assert.ok(first, exporter.stderr);
    assert.deepEqual([logFields(first).reason, logFields(first).detail], ['grpc', 'gRPC UNAVAILABLE: collector overloaded']);
  });

  it('starts with the collector down, counts what it could not send, and sends once the collector is up', async function () {
    await receiver.stop();
    const exporter = await new RunningExporter(['--netns', ns.path, '--otlp-endpoint', receiver.endpoint], GRPC).ready();
    let made = 0;
    try {
      await connections(5);
      made += 5;
      let m = await exporter.settle((x) => spanCounts(x).failed === 10 && spanCounts(x).queued === 0, 20_000);
      assert.deepEqual(spanCounts(m), { exported: 0, failed: 10, dropped: 10, queued: 0 });
      const first = exporter.stderr.split('\n').find((l) => l.includes('msg="span export failed'));
      assert.ok(first, exporter.stderr);
      assert.equal(logFields(first).reason, 'refused');
      assert.match(logFields(first).detail!, /^gRPC UNAVAILABLE: .*ECONNREFUSED 127\.0\.0\.1:\d+/);

      await receiver.start();
      // the channel reconnects after its backoff: connections until one's spans arrive
      for (let i = 0; i < 60 && spanCounts(m).exported === 0; i++) {
        await connections(1);
        made += 1;
        const before = spanCounts(m).exported + spanCounts(m).failed;
        m = await exporter.settle((x) => spanCounts(x).exported + spanCounts(x).failed === before + 2 && spanCounts(x).queued === 0, 20_000);
        if (spanCounts(m).exported === 0) await sleep(250);
      }
      // every span is either sent or counted, and the receiver has each one sent
      const c = spanCounts(m);
      assert.ok(c.exported > 0, `spans sent once the collector is up: ${JSON.stringify(c)}`);
      assert.deepEqual([c.exported + c.failed, c.dropped, c.queued], [2 * made, c.failed, 0]);
      assert.equal(receiver.spans.length, c.exported);
      assert.deepEqual(receiver.errors, []);
    } finally {
      assert.equal((await exporter.stop()).code, 0);
    }
  });

  it('stops within moments when the collector takes calls and never answers, counting what was being sent as dropped at shutdown', async function () {
    receiver.grpcFault = 'hang';
    // the default OTLP timeout (10 s): calls are still in flight at the stop
    const exporter = await new RunningExporter(['--netns', ns.path, '--otlp-endpoint', receiver.endpoint], {
      ...GRPC,
      OTEL_BSP_MAX_EXPORT_BATCH_SIZE: '20',
    }).ready();
    const n = 100;
    try {
      await connections(n);
      const m = await exporter.settle((x) => spanCounts(x).queued === 2 * n);
      assert.deepEqual(spanCounts(m), { exported: 0, failed: 0, dropped: 0, queued: 2 * n });
    } catch (err) {
      await exporter.stop('SIGKILL');
      throw err;
    }
    let timer: NodeJS.Timeout | undefined;
    const stopped = await Promise.race([exporter.stop(), new Promise<'late'>((r) => (timer = setTimeout(() => r('late'), 5000)))]);
    clearTimeout(timer);
    assert.notEqual(stopped, 'late', `the exporter did not stop within 5 s:\n${exporter.stderr}`);
    assert.deepEqual(stopped, { code: 0, signal: null });
    const line = exporter.stderr.split('\n').find((l) => l.includes('msg="spans not delivered at shutdown'));
    assert.ok(line, `the stop says what it dropped:\n${exporter.stderr}`);
    assert.equal(logFields(line).spans, String(2 * n));
    assert.ok(receiver.requests >= 1);
  });
});

describe('connection spans over TLS, with the OTEL_EXPORTER_OTLP_* certificate files', function () {
  let ns: Netns;
  let certs: TestCerts;

  before(async function () {
    requireRoot();
    ns = createNetns('otlptls');
    certs = makeCerts('otlptls');
  });

  after(async function () {
    await ns?.destroy();
    await certs?.remove();
  });

  /** One connection's two spans sent with env; the spans counts after. */
  async function oneConnection(endpoint: string, env: NodeJS.ProcessEnv, done: (m: Metrics) => boolean): Promise<ReturnType<typeof spanCounts>> {
    const exporter = await new RunningExporter(['--netns', ns.path, '--otlp-endpoint', endpoint], { OTEL_BSP_SCHEDULE_DELAY: '50', ...env }).ready();
    try {
      const server = await startServer(ns, { host: '127.0.0.1', port: 0, down: 1 });
      await runClient(ns, { host: '127.0.0.1', port: server.port, connections: [{ up: 1 }] });
      await server.stop();
      return spanCounts(await exporter.settle(done, 20_000));
    } finally {
      assert.equal((await exporter.stop()).code, 0);
    }
  }
  const sent = (m: Metrics) => spanCounts(m).exported === 2;
  const failed = (m: Metrics) => spanCounts(m).failed === 2 && spanCounts(m).queued === 0;

  for (const protocol of ['grpc', 'http/protobuf'] as const) {
    it(`trusts the CA and shows the client certificate given (${protocol}), and sends nothing to a collector it cannot verify or that refuses it`, async function () {
      const tls = { key: certs.read(certs.serverKey), cert: certs.read(certs.serverCert), clientCa: certs.read(certs.caCert) };
      const receiver = protocol === 'grpc' ? await new GrpcOtlpReceiver(tls).start() : await new OtlpReceiver(tls).start();
      try {
        assert.match(receiver.endpoint, /^https:\/\/127\.0\.0\.1:\d+$/);
        const env = {
          OTEL_EXPORTER_OTLP_PROTOCOL: protocol,
          OTEL_EXPORTER_OTLP_CERTIFICATE: certs.caCert,
          OTEL_EXPORTER_OTLP_CLIENT_KEY: certs.clientKey,
          OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE: certs.clientCert,
        };
        assert.deepEqual(await oneConnection(receiver.endpoint, env, sent), { exported: 2, failed: 0, dropped: 0, queued: 0 });
        assert.equal(receiver.spans.length, 2);
        // the system's CAs do not know the test's: the collector is not trusted
        const { OTEL_EXPORTER_OTLP_CERTIFICATE: _, ...untrusted } = env;
        assert.deepEqual(await oneConnection(receiver.endpoint, untrusted, failed), { exported: 0, failed: 2, dropped: 2, queued: 0 });
        // no client certificate: the collector refuses the connection
        assert.deepEqual(
          await oneConnection(receiver.endpoint, { OTEL_EXPORTER_OTLP_PROTOCOL: protocol, OTEL_EXPORTER_OTLP_CERTIFICATE: certs.caCert }, failed),
          {
            exported: 0,
            failed: 2,
            dropped: 2,
            queued: 0,
          },
        );
        assert.equal(receiver.spans.length, 2);
        assert.deepEqual(receiver.errors, []);
      } finally {
        await receiver.stop();
      }
    });
  }
});
