// SPDX-License-Identifier: Apache-2.0
// /metrics content negotiation: OpenMetrics for the Accept headers scrapers
// send when they can read it, the classic text format for everything else,
// and both served over loopback from a registry of one counter.
import assert from 'node:assert/strict';
import { Counter, Registry } from 'prom-client';
import { Logger } from '../../src/log';
import { metricsContentType, MetricsServer } from '../../src/server';
import { httpGet } from '../helpers/exporter';

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
