// SPDX-License-Identifier: Apache-2.0
// /metrics content negotiation: OpenMetrics for the Accept headers scrapers
// send when they can read it, the classic text format for everything else,
// and both served over loopback from a registry of one counter. And the
// server's defences, with short timeouts and a small cap: stalled requests
// are closed, and a scrape gets in past idle connections.
import assert from 'node:assert/strict';
import net from 'node:net';
import { Counter, Gauge, Registry } from 'prom-client';
import { Logger } from '../../src/log';
import { metricsContentType, MetricsServer, type HttpLimits } from '../../src/server';
import { httpGet, sleep } from '../helpers/exporter';

const OPENMETRICS = 'application/openmetrics-text; version=1.0.0; charset=utf-8';
const CLASSIC = 'text/plain; version=0.0.4; charset=utf-8';

// Prometheus 2.x default scrape_protocols
const PROMETHEUS_2 =
  'application/openmetrics-text;version=1.0.0;q=0.5,application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2';
// Prometheus 3.x default scrape_protocols, with each escaping scheme
const prometheus3 = (escaping: string) =>
  `application/openmetrics-text;version=1.0.0;escaping=${escaping};q=0.6,application/openmetrics-text;version=0.0.1;q=0.5,` +
  `text/plain;version=1.0.0;escaping=${escaping};q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2`;
// Prometheus 3.x with native histograms on: protobuf first
const PROMETHEUS_3_PROTOBUF =
  'application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.6,' +
  'application/openmetrics-text;version=1.0.0;escaping=underscores;q=0.5,application/openmetrics-text;version=0.0.1;q=0.4,' +
  'text/plain;version=1.0.0;escaping=underscores;q=0.3,text/plain;version=0.0.4;q=0.2,*/*;q=0.1';
// Prometheus 2.x with scrape_protocols: [PrometheusText0.0.4]
const PROMETHEUS_TEXT_ONLY = 'text/plain;version=0.0.4;q=0.5,*/*;q=0.4';

describe('metrics content negotiation', function () {
  it('serves OpenMetrics to Prometheus 2.x and 3.x as they scrape by default', function () {
    for (const accept of [
      PROMETHEUS_2,
      prometheus3('underscores'),
      prometheus3('allow-utf-8'),
      prometheus3('dots'),
      prometheus3('values'),
      PROMETHEUS_3_PROTOBUF,
    ]) {
      assert.equal(metricsContentType(accept), OPENMETRICS, accept);
    }
  });

  it('serves the classic text format to curl, to no Accept header and to a scraper asking for text/plain only', function () {
    for (const accept of ['*/*', undefined, '', 'text/plain', PROMETHEUS_TEXT_ONLY, 'text/plain;version=1.0.0;escaping=underscores;q=0.5,*/*;q=0.4']) {
      assert.equal(metricsContentType(accept), CLASSIC, String(accept));
    }
  });

  it('takes OpenMetrics at any rank and version, even below text/plain', function () {
    assert.equal(metricsContentType('text/plain;version=0.0.4;q=0.5,application/openmetrics-text;version=1.0.0;q=0.4,*/*;q=0.3'), OPENMETRICS);
    assert.equal(metricsContentType('application/openmetrics-text; version=0.0.1,text/plain;version=0.0.4;q=0.5,*/*;q=0.1'), OPENMETRICS);
    assert.equal(metricsContentType('application/openmetrics-text'), OPENMETRICS);
    assert.equal(metricsContentType('application/openmetrics-text;q=0.001'), OPENMETRICS);
  });

  it('does not serve OpenMetrics to a header that gives it q=0 ("not acceptable")', function () {
    for (const q of ['q=0', 'q=0.', 'q=0.0', 'q=0.000', 'Q=0']) {
      assert.equal(metricsContentType(`application/openmetrics-text;version=1.0.0;${q},text/plain;version=0.0.4;q=0.5,*/*;q=0.1`), CLASSIC, q);
      assert.equal(metricsContentType(`application/openmetrics-text; ${q}; version=1.0.0`), CLASSIC, q);
    }
    // one version refused, another still acceptable
    assert.equal(metricsContentType('application/openmetrics-text;version=1.0.0;q=0,application/openmetrics-text;version=0.0.1;q=0.4,*/*;q=0.1'), OPENMETRICS);
  });
});

describe('metrics server', function () {
  let server: MetricsServer;
  let url: string;
  const logLines: string[] = [];

  before(async function () {
    const registry = new Registry();
    const counter = new Counter({ name: 'test_events_total', help: 'Events seen.', labelNames: ['kind'], registers: [registry] });
    counter.inc({ kind: 'a' }, 3);
    server = await MetricsServer.listen(
      { host: '127.0.0.1', port: 0 },
      registry,
      () => ({ ready: true, detail: 'ready' }),
      new Logger('info', 'http', (l) => logLines.push(l)),
    );
    url = `http://127.0.0.1:${server.address.port}/metrics`;
  });

  after(async function () {
    await server?.close();
  });

  const classic = {
    status: 200,
    contentType: CLASSIC,
    body: '# HELP test_events_total Events seen.\n# TYPE test_events_total counter\ntest_events_total{kind="a"} 3\n',
  };

  it('serves the classic text format to a scraper without an Accept header', async function () {
    assert.deepEqual(await httpGet(url), classic);
  });

  it('serves OpenMetrics to Prometheus, and the classic form unchanged afterwards', async function () {
    assert.deepEqual(await httpGet(url, { Accept: PROMETHEUS_2 }), {
      status: 200,
      contentType: OPENMETRICS,
      body: '# HELP test_events Events seen.\n# TYPE test_events counter\ntest_events_total{kind="a"} 3\n# EOF\n',
    });
    assert.deepEqual(await httpGet(url, { Accept: '*/*' }), classic);
    assert.deepEqual(await httpGet(url, { Accept: 'application/openmetrics-text;version=1.0.0;q=0,*/*;q=0.1' }), classic);
    assert.deepEqual(logLines, []);
  });
});

/** A raw connection that sends what it is told and records what it sees. */
function rawConnection(port: number): Promise<{ socket: net.Socket; received: () => string; closed: Promise<void> }> {
  return new Promise((resolve, reject) => {
    let data = '';
    const socket = net.connect(port, '127.0.0.1');
    socket.setEncoding('utf8');
    socket.on('data', (d: string) => (data += d));
    socket.on('error', () => {}); // a reset is a close too
    const closed = new Promise<void>((r) => socket.once('close', () => r()));
    socket.once('connect', () => resolve({ socket, received: () => data, closed }));
    socket.once('error', reject);
  });
}

async function limitedServer(limits: Partial<HttpLimits>, logLines: string[]): Promise<MetricsServer> {
  const registry = new Registry();
  new Counter({ name: 'test_events_total', help: 'Events seen.', registers: [registry] }).inc();
  return MetricsServer.listen(
    { host: '127.0.0.1', port: 0 },
    registry,
    () => ({ ready: true, detail: 'ready' }),
    new Logger('info', 'http', (l) => logLines.push(l)),
    limits,
  );
}

describe('metrics server timeouts', function () {
  let server: MetricsServer;
  let port: number;

  before(async function () {
    server = await limitedServer({ headersTimeoutMs: 300, requestTimeoutMs: 600, checkIntervalMs: 100 }, []);
    port = server.address.port;
  });

  after(async function () {
    await server?.close();
  });

  it('closes, with a 408, a connection that sends nothing, half a request, or its headers a line at a time', async function () {
    const silent = await rawConnection(port);
    const half = await rawConnection(port);
    half.socket.write('GET /metrics HTTP/1.1\r\nHost: x\r\n');
    const trickle = await rawConnection(port);
    trickle.socket.write('GET /metrics HTTP/1.1\r\n');
    const lines = setInterval(() => trickle.socket.write('X-Slow: 1\r\n'), 50);
    await Promise.all([silent.closed, half.closed, trickle.closed]);
    clearInterval(lines);
    for (const c of [silent, half, trickle]) assert.match(c.received(), /^HTTP\/1\.1 408 Request Timeout\r\n/);
  });

  it('closes a connection whose request body does not arrive', async function () {
    const slow = await rawConnection(port);
    slow.socket.write('POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nab');
    const bytes = setInterval(() => slow.socket.write('a'), 50);
    await slow.closed;
    clearInterval(bytes);
    assert.match(slow.received(), /^HTTP\/1\.1 405 Method Not Allowed\r\n/);
  });
});

describe('metrics server with a client that does not read', function () {
  it('abandons the response and closes the connection once it makes no progress', async function () {
    const registry = new Registry();
    // a body far larger than what the socket buffers of both ends hold
    new Gauge({ name: 'test_big', help: 'A big label.', labelNames: ['x'], registers: [registry] }).set({ x: 'a'.repeat(32 << 20) }, 1);
    const server = await MetricsServer.listen(
      { host: '127.0.0.1', port: 0 },
      registry,
      () => ({ ready: true, detail: 'ready' }),
      new Logger('info', 'http', () => {}),
      { stalledResponseTimeoutMs: 300 },
    );
    const socket = net.connect(server.address.port, '127.0.0.1');
    socket.pause();
    socket.write('GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n');
    // the client reads nothing for five times the timeout; then it gets
    // what the kernel had buffered, and the end: not the whole body
    await sleep(1500);
    let received = 0;
    socket.on('data', (d: Buffer) => (received += d.length));
    socket.on('error', () => {});
    await new Promise<void>((r) => socket.once('close', () => r()).resume());
    assert.ok(received < 32 << 20, `received ${received} bytes`);
    await server.close();
  });
});

describe('metrics server connection limit', function () {
  it('answers a scrape at its connection limit, closing the connection idle the longest, and says so once', async function () {
    const logLines: string[] = [];
    const server = await limitedServer({ maxConnections: 4 }, logLines);
    const port = server.address.port;
    const idle = [];
    for (let i = 0; i < 4; i++) idle.push(await rawConnection(port));
    const r = await httpGet(`http://127.0.0.1:${port}/metrics`);
    assert.equal(r.status, 200);
    await idle[0]!.closed;
    assert.deepEqual(
      idle.map((c) => c.socket.destroyed),
      [true, false, false, false],
    );
    assert.equal(logLines.length, 1);
    assert.match(
      logLines[0]!,
      /level=warn component=http msg="HTTP connections at their limit: each new one closes the connection idle the longest \(see --http-connection-limit\)" limit=4$/,
    );
    for (const c of idle) c.socket.destroy();
    await server.close();
  });
});
