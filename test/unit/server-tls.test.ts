// SPDX-License-Identifier: Apache-2.0
// The HTTP server with a web configuration, over loopback: each client auth
// type against clients with no certificate, one of the configured CA and one
// of another CA; client_allowed_sans; response headers; and the connection
// cap counting TLS connections by their TCP sockets, so that a scraper's
// answered keep-alive connection outlives one that never spoke.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import https from 'node:https';
import net from 'node:net';
import { Registry } from 'prom-client';
import { Logger } from '../../src/log';
import { MetricsServer } from '../../src/server';
import { TestPki } from '../helpers/certs';
import { loadWebConfig, type ClientAuthType } from '../../src/web-config';

let pki: TestPki;
const at = (name: string) => pki.at(name);

type Client = 'none' | 'trusted' | 'stranger';

/** GET over TLS with a client certificate or none: the status, or "refused"
 * when the connection failed. agent: a keep-alive agent to reuse. */
function get(port: number, client: Client, agent: https.Agent | false = false): Promise<number | 'refused'> {
  return new Promise((resolve) => {
    const req = https.get(
      {
        host: '127.0.0.1',
        port,
        path: '/metrics',
        servername: 'localhost',
        ca: fs.readFileSync(at('ca.crt')),
        ...(client === 'none' ? {} : { cert: fs.readFileSync(at(`${client}.crt`)), key: fs.readFileSync(at(`${client}.key`)) }),
        agent,
      },
      (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
        res.on('error', () => resolve('refused'));
      },
    );
    req.on('error', () => resolve('refused'));
  });
}

const servers: MetricsServer[] = [];

async function serve(yaml: string, maxConnections = 16): Promise<number> {
  fs.writeFileSync(at('web.yml'), yaml);
  const server = await MetricsServer.listen(
    { host: '127.0.0.1', port: 0 },
    new Registry(),
    () => ({ ready: true, detail: 'ready' }),
    new Logger('error', 'http', () => {}),
    { maxConnections },
    loadWebConfig(at('web.yml')),
  );
  servers.push(server);
  return server.address.port;
}

const tlsFile = (auth: ClientAuthType, extra = '') =>
  `tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  client_auth_type: ${auth}\n${auth.includes('Verify') ? '  client_ca_file: ca.crt\n' : ''}${extra}`;

describe('HTTP server with TLS', function () {
  before(function () {
    pki = new TestPki('server-tls')
      .ca('ca')
      .ca('other-ca')
      .issue('server', { by: 'ca', san: 'DNS:localhost' })
      .issue('trusted', { by: 'ca', san: 'DNS:prometheus.monitoring' })
      .issue('stranger', { by: 'other-ca', san: 'DNS:prometheus.monitoring' });
  });
  afterEach(async function () {
    for (const s of servers.splice(0)) await s.close();
  });
  after(async function () {
    await pki.remove();
  });

  const matrix: [ClientAuthType, Record<Client, number | 'refused'>][] = [
    ['NoClientCert', { none: 200, trusted: 200, stranger: 200 }],
    ['RequestClientCert', { none: 200, trusted: 200, stranger: 200 }],
    ['RequireAnyClientCert', { none: 'refused', trusted: 200, stranger: 200 }],
    ['VerifyClientCertIfGiven', { none: 200, trusted: 200, stranger: 'refused' }],
    ['RequireAndVerifyClientCert', { none: 'refused', trusted: 200, stranger: 'refused' }],
  ];
  for (const [auth, expected] of matrix) {
    it(`${auth}: ${Object.entries(expected)
      .map(([c, r]) => `${c} ${r}`)
      .join(', ')}`, async function () {
      const port = await serve(tlsFile(auth));
      const got: Record<string, number | 'refused'> = {};
      for (const client of ['none', 'trusted', 'stranger'] as const) got[client] = await get(port, client);
      assert.deepEqual(got, expected);
    });
  }

  it('applies a new client_auth_type to new connections when the file changes', async function () {
    const port = await serve(tlsFile('NoClientCert'));
    assert.equal(await get(port, 'none'), 200);
    fs.writeFileSync(at('web.yml'), tlsFile('RequireAndVerifyClientCert'));
    const deadline = Date.now() + 10_000;
    let got = await get(port, 'none');
    while (got !== 'refused' && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 200));
      got = await get(port, 'none');
    }
    assert.deepEqual(
      { none: got, trusted: await get(port, 'trusted'), stranger: await get(port, 'stranger') },
      { none: 'refused', trusted: 200, stranger: 'refused' },
    );
  });

  it('refuses a verified client certificate without an allowed name (client_allowed_sans)', async function () {
    let port = await serve(tlsFile('RequireAndVerifyClientCert', '  client_allowed_sans: [prometheus.monitoring]\n'));
    assert.equal(await get(port, 'trusted'), 200);
    port = await serve(tlsFile('RequireAndVerifyClientCert', '  client_allowed_sans: [grafana.monitoring]\n'));
    assert.equal(await get(port, 'trusted'), 'refused');
  });

  it('sets the configured headers on every response, 401s included', async function () {
    const port = await serve(
      `${tlsFile('NoClientCert')}http_server_config:\n  headers:\n    X-Frame-Options: deny\nbasic_auth_users:\n  a: '$2b$04$${'a'.repeat(53)}'\n`,
    );
    const headers = await new Promise<Record<string, unknown>>((resolve, reject) => {
      https
        .get({ host: '127.0.0.1', port, path: '/metrics', servername: 'localhost', ca: fs.readFileSync(at('ca.crt')), agent: false }, (res) => {
          res.resume();
          resolve({ status: res.statusCode, frame: res.headers['x-frame-options'], auth: res.headers['www-authenticate'] });
        })
        .on('error', reject);
    });
    assert.deepEqual(headers, { status: 401, frame: 'deny', auth: 'Basic realm="bpfnet-exporter", charset="UTF-8"' });
  });

  it("at the connection cap closes a connection that never spoke, not a scraper's answered one", async function () {
    const port = await serve(tlsFile('NoClientCert'), 2);
    const scraper = new https.Agent({ keepAlive: true, maxSockets: 1 });
    try {
      assert.equal(await get(port, 'none', scraper), 200);
      const kept = Object.values(scraper.freeSockets).flat()[0]!;
      const silent = net.connect(port, '127.0.0.1');
      await new Promise((resolve) => silent.once('connect', resolve));
      const silentClosed = new Promise((resolve) => silent.once('close', resolve));
      // a third connection: the cap closes the idlest, the one that never spoke
      assert.equal(await get(port, 'none'), 200);
      await silentClosed;
      assert.equal(kept.destroyed, false);
      assert.equal(await get(port, 'none', scraper), 200);
      assert.equal(Object.values(scraper.freeSockets).flat()[0], kept, 'the same keep-alive connection');
    } finally {
      scraper.destroy();
    }
  });
});
