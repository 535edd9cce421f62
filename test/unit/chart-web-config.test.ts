// SPDX-License-Identifier: Apache-2.0
// The chart's webConfig: the Secret mounted read-only whole (so that the
// kubelet's updates reach the exporter), --web.config.file pointing into it,
// the httpGet probes asking over HTTPS, and the ServiceMonitor or PodMonitor
// scraping https with the client certificate and basic auth from Secrets.
import assert from 'node:assert/strict';
import { render, type Obj } from '../helpers/chart-check';

const exporterOf = (ds: Obj): Obj => ds.spec.template.spec.containers.find((c: Obj) => c.name === 'exporter');

const SCRAPE = {
  tlsConfig: {
    ca: { secret: { name: 'bpfnet-scrape', key: 'ca.crt' } },
    cert: { secret: { name: 'bpfnet-scrape', key: 'tls.crt' } },
    keySecret: { name: 'bpfnet-scrape', key: 'tls.key' },
    serverName: 'bpfnet-exporter',
  },
  basicAuth: { username: { name: 'bpfnet-scrape', key: 'username' }, password: { name: 'bpfnet-scrape', key: 'password' } },
};

describe('Helm chart: webConfig', function () {
  it('leaves HTTP alone by default: no Secret, no flag, probes and monitors as they were', function () {
    const r = render({ serviceMonitor: { enabled: true } });
    const c = exporterOf(r.one('DaemonSet'));
    assert.equal(
      c.args.some((a: string) => a.startsWith('--web.config.file')),
      false,
    );
    assert.equal(
      r.one('DaemonSet').spec.template.spec.volumes.some((v: Obj) => v.name === 'web-config'),
      false,
    );
    assert.deepEqual(c.livenessProbe, { httpGet: { path: '/healthz', port: 'metrics' }, periodSeconds: 30, timeoutSeconds: 5 });
    const endpoint = r.one('ServiceMonitor').spec.endpoints[0];
    assert.equal(endpoint.scheme, undefined);
    assert.equal(endpoint.basicAuth, undefined);
  });

  it('mounts the Secret, points --web.config.file into it, probes over HTTPS and scrapes https with auth', function () {
    const r = render({ webConfig: { secretName: 'bpfnet-web', scrape: SCRAPE }, serviceMonitor: { enabled: true }, prometheusScrapeAnnotations: true });
    const ds = r.one('DaemonSet');
    const c = exporterOf(ds);
    assert.deepEqual(
      c.args.filter((a: string) => a.startsWith('--web.config.file')),
      ['--web.config.file=/etc/bpfnet-exporter/web/web-config.yml'],
    );
    assert.deepEqual(
      ds.spec.template.spec.volumes.find((v: Obj) => v.name === 'web-config'),
      { name: 'web-config', secret: { secretName: 'bpfnet-web' } },
    );
    assert.deepEqual(
      c.volumeMounts.find((m: Obj) => m.name === 'web-config'),
      { name: 'web-config', mountPath: '/etc/bpfnet-exporter/web', readOnly: true },
    );
    assert.deepEqual(c.livenessProbe, { httpGet: { scheme: 'HTTPS', path: '/healthz', port: 'metrics' }, periodSeconds: 30, timeoutSeconds: 5 });
    assert.deepEqual(c.readinessProbe, { httpGet: { scheme: 'HTTPS', path: '/readyz', port: 'metrics' }, periodSeconds: 30, timeoutSeconds: 5 });
    assert.equal(ds.spec.template.metadata.annotations['prometheus.io/scheme'], 'https');
    const endpoint = r.one('ServiceMonitor').spec.endpoints[0];
    assert.equal(endpoint.scheme, 'https');
    assert.deepEqual(endpoint.tlsConfig, SCRAPE.tlsConfig);
    assert.deepEqual(endpoint.basicAuth, SCRAPE.basicAuth);
    assert.equal(endpoint.port, 'metrics');
    assert.match(
      r.notes,
      /\(with the web config of Secret bpfnet-web: https:\/\/, -k, and --cert\/--key if it asks for a client certificate; -u USER if it has basic_auth_users\)/,
    );
  });

  it('gives the PodMonitor the same scheme and auth, and takes another key of the Secret', function () {
    const r = render({ webConfig: { secretName: 'bpfnet-web', fileKey: 'web.yaml', scrape: SCRAPE }, podMonitor: { enabled: true } });
    assert.ok(exporterOf(r.one('DaemonSet')).args.includes('--web.config.file=/etc/bpfnet-exporter/web/web.yaml'));
    const endpoint = r.one('PodMonitor').spec.podMetricsEndpoints[0];
    assert.equal(endpoint.scheme, 'https');
    assert.deepEqual(endpoint.tlsConfig, SCRAPE.tlsConfig);
    assert.deepEqual(endpoint.basicAuth, SCRAPE.basicAuth);
  });

  it('keeps HTTP for a file with basic auth only (tls: false), and probes the user set', function () {
    const r = render({
      webConfig: { secretName: 'bpfnet-web', tls: false, scrape: { basicAuth: SCRAPE.basicAuth } },
      serviceMonitor: { enabled: true },
      livenessProbe: { tcpSocket: { port: 'metrics' }, httpGet: null, periodSeconds: 10 },
      readinessProbe: { httpGet: { path: '/readyz', port: 'metrics', scheme: 'HTTP' } },
    });
    const c = exporterOf(r.one('DaemonSet'));
    assert.deepEqual(c.livenessProbe, { tcpSocket: { port: 'metrics' }, periodSeconds: 10, timeoutSeconds: 5 });
    assert.deepEqual(c.readinessProbe, { httpGet: { path: '/readyz', port: 'metrics', scheme: 'HTTP' }, periodSeconds: 30, timeoutSeconds: 5 });
    const endpoint = r.one('ServiceMonitor').spec.endpoints[0];
    assert.equal(endpoint.scheme, undefined);
    assert.equal(endpoint.tlsConfig, undefined);
    assert.deepEqual(endpoint.basicAuth, SCRAPE.basicAuth);
  });

  it('keeps a tcpSocket probe with TLS, for a file that requires client certificates', function () {
    const r = render({ webConfig: { secretName: 'bpfnet-web' }, readinessProbe: { tcpSocket: { port: 'metrics' }, httpGet: null } });
    assert.deepEqual(exporterOf(r.one('DaemonSet')).readinessProbe, { tcpSocket: { port: 'metrics' }, periodSeconds: 30, timeoutSeconds: 5 });
  });
});
