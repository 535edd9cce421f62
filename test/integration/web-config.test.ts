// SPDX-License-Identifier: Apache-2.0
// --web.config.file against the real Prometheus: scraped over TLS with a
// client certificate and basic auth, refused without credentials, refused
// over plain HTTP; a rotated certificate and password applied without a
// restart and without closing the listening socket; a bad file refused at
// start (one line, exit status 2) and, at run time, logged once while the
// last good one goes on. Certificates come from openssl, hashes from bcryptjs.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import type { TLSSocket } from 'node:tls';
import bcrypt from 'bcryptjs';
import { TestPki } from '../helpers/certs';
import { RunningExporter, runCli, sleep } from '../helpers/exporter';
import { RunningPrometheus, type ScrapeJob } from '../helpers/prometheus';
import { requireRoot, withCapabilities } from '../helpers/privileges';

const pki = new TestPki('web-config');
const at = (name: string) => pki.at(name);

/** The test CA, two server certificates for one name (the second to rotate
 * to) and a client certificate. */
function makePki(): void {
  const server = { by: 'ca', subject: '/CN=localhost', san: 'DNS:localhost,IP:127.0.0.1' };
  pki.ca('ca').issue('server', server).issue('server2', server).issue('client', { by: 'ca', subject: '/CN=prometheus' });
}

const fingerprint = (file: string) => new X509Certificate(fs.readFileSync(at(file))).fingerprint256;

interface Answer {
  status: number;
  /** the certificate the server presented */
  fingerprint: string;
}

/** GET over TLS, trusting the test CA; with the client certificate unless
 * told not to, and basic auth when given. */
function get(port: number, urlPath: string, o: { user?: string; password?: string; clientCert?: boolean } = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const withCert = o.clientCert ?? true;
    const req = https.get(
      {
        host: '127.0.0.1',
        port,
        path: urlPath,
        servername: 'localhost',
        ca: fs.readFileSync(at('ca.crt')),
        ...(withCert ? { cert: fs.readFileSync(at('client.crt')), key: fs.readFileSync(at('client.key')) } : {}),
        ...(o.user !== undefined ? { auth: `${o.user}:${o.password ?? ''}` } : {}),
        agent: false,
      },
      (res) => {
        const fp = (res.socket as TLSSocket).getPeerCertificate().fingerprint256;
        res.resume();
        res.on('end', () => resolve({ status: res.statusCode ?? 0, fingerprint: fp }));
      },
    );
    req.on('error', reject);
    req.setTimeout(10_000, () => req.destroy(new Error(`GET ${urlPath} timed out`)));
  });
}

/** The error a request gets, or "answered" if it got an answer. */
async function failure(request: Promise<unknown>): Promise<string> {
  return request.then(
    () => 'answered',
    (err: NodeJS.ErrnoException) => err.code ?? err.message,
  );
}

function plainGet(port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path: '/metrics', agent: false }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('error', reject);
    req.setTimeout(10_000, () => req.destroy(new Error('plain GET timed out')));
  });
}

/** The listening socket's inode (ss), to tell whether it was replaced. */
function listenerInode(port: number): string {
  const out = execFileSync('ss', ['-ltnHe', `sport = :${port}`], { encoding: 'utf8' });
  const m = /ino:(\d+)/.exec(out);
  assert.ok(m, `no listener on port ${port}: ${out}`);
  return m[1]!;
}

async function until<T>(what: string, probe: () => Promise<T>, done: (v: T) => boolean, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (done(v)) return v;
    if (Date.now() > deadline) throw new Error(`${what}: still ${JSON.stringify(v)}`);
    await sleep(200);
  }
}

function webConfig(hash: string, extra = ''): string {
  return [
    'tls_server_config:',
    '  cert_file: server.crt',
    '  key_file: server.key',
    '  client_ca_file: ca.crt',
    '  client_auth_type: RequireAndVerifyClientCert',
    'http_server_config:',
    '  headers:',
    '    X-Content-Type-Options: nosniff',
    'basic_auth_users:',
    `  prometheus: '${hash}'`,
    extra,
  ].join('\n');
}

const oneLine = (stderr: string): string => {
  const lines = stderr.trim().split('\n');
  assert.equal(lines.length, 1, `expected one line, got:\n${stderr}`);
  assert.match(lines[0]!, /^bpfnet-exporter: /);
  return lines[0]!;
};

describe('--web.config.file', function () {
  before(function () {
    requireRoot.call(this);
    makePki();
  });

  describe('a bad file at start: one line naming the file and the key, exit status 2', function () {
    const hash = bcrypt.hashSync('pw', 4);
    const cases: [string, string | undefined, RegExp][] = [
      ['a missing file', undefined, /--web\.config\.file \S+\/none\.yml: no such file; give the path of an existing file/],
      ['a file that is not YAML', 'tls_server_config: [unclosed', /bad\.yml: not YAML: Flow sequence .* at line 1, column 29; fix the file$/],
      [
        'an unknown key',
        'tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  bogus: 1',
        /bad\.yml: tls_server_config\.bogus: not a setting; remove it/,
      ],
      ['a setting it does not support', 'rate_limit:\n  interval: 1s\n  burst: 5', /bad\.yml: rate_limit: not supported by bpfnet-exporter; remove it/],
      [
        'a password that is not a bcrypt hash',
        'basic_auth_users:\n  prometheus: secret',
        /bad\.yml: basic_auth_users\.prometheus: not a bcrypt hash; make one with htpasswd -nbBC 10/,
      ],
      [
        'a key of another certificate',
        'tls_server_config:\n  cert_file: server.crt\n  key_file: client.key',
        /bad\.yml: tls_server_config\.key_file: not the private key of the certificate; give the key the certificate was made for$/,
      ],
      [
        'a client CA file that does not exist',
        'tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: none-ca.crt',
        /bad\.yml: tls_server_config\.client_ca_file none-ca\.crt: no such file/,
      ],
      [
        'a client auth type it does not know',
        'tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  client_auth_type: Sometimes',
        /bad\.yml: tls_server_config\.client_auth_type: "Sometimes" is not a client auth type; give one of NoClientCert, RequestClientCert, RequireAnyClientCert, VerifyClientCertIfGiven, RequireAndVerifyClientCert$/,
      ],
      [
        'a client CA without a client auth type',
        'tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  client_ca_file: ca.crt',
        /bad\.yml: tls_server_config\.client_ca_file: a client CA with client_auth_type NoClientCert/,
      ],
      [
        'a TLS version it does not know',
        'tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  min_version: TLS14',
        /bad\.yml: tls_server_config\.min_version: "TLS14" is not a TLS version; give one of TLS10, TLS11, TLS12, TLS13$/,
      ],
      [
        'a certificate that is not PEM',
        'tls_server_config:\n  cert_file: ca.srl\n  key_file: server.key',
        /bad\.yml: tls_server_config\.cert_file: cannot read it \(no start line\); give a PEM file$/,
      ],
      [
        'a header that cannot be set',
        `http_server_config:\n  headers:\n    Server: x\nbasic_auth_users:\n  a: '${hash}'`,
        /http_server_config\.headers\.Server: not a header that can be set/,
      ],
    ];
    for (const [what, content, message] of cases) {
      it(`exits 2 for ${what}`, async function () {
        const file = at(content === undefined ? 'none.yml' : 'bad.yml');
        if (content !== undefined) fs.writeFileSync(file, content);
        const r = await runCli(['--listen', '127.0.0.1:0', '--web.config.file', file]);
        assert.match(oneLine(r.stderr), message);
        assert.equal(r.code, 2);
      });
    }

    it('exits 2 for a file it may not read, before anything loads', async function () {
      const file = at('private.yml');
      fs.writeFileSync(file, '', { mode: 0o000 });
      // root without the capabilities that pass over file modes, rather than
      // another user, who may not reach a checkout under /root at all
      const r = await runCli(['--listen', '127.0.0.1:0', '--web.config.file', file], { wrap: withCapabilities([]) });
      assert.match(oneLine(r.stderr), /--web\.config\.file \S+private\.yml: permission denied; make it readable by the exporter$/);
      assert.equal(r.code, 2);
    });

    it('names BPFNET_WEB_CONFIG_FILE when the file came from it', async function () {
      const r = await runCli(['--listen', '127.0.0.1:0'], { env: { BPFNET_WEB_CONFIG_FILE: at('none.yml') } });
      assert.match(oneLine(r.stderr), /^bpfnet-exporter: BPFNET_WEB_CONFIG_FILE \S+none\.yml: no such file/);
      assert.equal(r.code, 2);
    });
  });

  describe('TLS, a client certificate and basic auth, scraped by Prometheus', function () {
    let exporter: RunningExporter;
    let prometheus: RunningPrometheus;
    let port: number;
    const file = at('web.yml');

    before(async function () {
      this.timeout(120_000);
      fs.writeFileSync(file, webConfig(bcrypt.hashSync('first-password', 10)));
      exporter = new RunningExporter(['--probes', 'connect', '--web.config.file', file]);
      port = Number(new URL(await exporter.url).port);
      await until(
        'exporter ready over TLS',
        () => get(port, '/readyz').then((r) => r.status),
        (s) => s === 200,
      );
      const tls = (user?: string, password?: string): Record<string, unknown> => ({
        scheme: 'https',
        tls_config: { ca_file: at('ca.crt'), cert_file: at('client.crt'), key_file: at('client.key'), server_name: 'localhost' },
        ...(user ? { basic_auth: { username: user, password } } : {}),
      });
      const job = (name: string, extra: Record<string, unknown>): ScrapeJob => ({ job: name, target: `127.0.0.1:${port}`, labels: {}, extra });
      prometheus = await RunningPrometheus.start([
        job('with-credentials', tls('prometheus', 'first-password')),
        job('without-credentials', tls()),
        job('wrong-password', tls('prometheus', 'guessed')),
        job('plain-http', {}),
      ]);
    });

    after(async function () {
      await prometheus?.stop();
      await exporter?.stop();
    });

    async function target(job: string): Promise<{ health: string; lastError: string }> {
      const r = await prometheus.targets();
      if (!r.ok) throw new Error(r.error);
      const t = r.data.activeTargets.find((a) => a.labels.job === job);
      return { health: t?.health ?? 'missing', lastError: t?.lastError ?? '' };
    }

    it('is scraped with the client certificate and the password, and its series are queryable', async function () {
      await until(
        'job with credentials up',
        () => target('with-credentials'),
        (t) => t.health === 'up',
      );
      assert.equal(await prometheus.waitFor('up{job="with-credentials"}', (v) => v === 1, 'scraped'), 1);
      assert.equal(await prometheus.waitFor('bpfnet_build_info{job="with-credentials"}', (v) => v === 1, 'a bpfnet_ series'), 1);
    });

    it('answers 401 without credentials or with a wrong password', async function () {
      const none = await until(
        'job without credentials down',
        () => target('without-credentials'),
        (t) => t.health === 'down',
      );
      assert.equal(none.lastError, 'server returned HTTP status 401 Unauthorized');
      const wrong = await until(
        'job with a wrong password down',
        () => target('wrong-password'),
        (t) => t.health === 'down',
      );
      assert.equal(wrong.lastError, 'server returned HTTP status 401 Unauthorized');
      assert.equal(await prometheus.value('up{job="wrong-password"}'), 0);
    });

    it('refuses plain HTTP and clients without a certificate, as a TLS server does', async function () {
      const plain = await until(
        'plain HTTP job down',
        () => target('plain-http'),
        (t) => t.health === 'down',
      );
      assert.match(plain.lastError, /EOF|connection reset/);
      assert.notEqual(await failure(plainGet(port)), 'answered');
      assert.notEqual(await failure(get(port, '/healthz', { clientCert: false })), 'answered');
    });

    it('keeps /healthz and /readyz open to a client with a certificate but no password', async function () {
      assert.equal((await get(port, '/healthz')).status, 200);
      assert.equal((await get(port, '/readyz')).status, 200);
      assert.equal((await get(port, '/')).status, 401);
    });

    it('applies a new certificate and password without a restart, on the same listening socket', async function () {
      const inode = listenerInode(port);
      assert.equal((await get(port, '/metrics', { user: 'prometheus', password: 'first-password' })).fingerprint, fingerprint('server.crt'));
      const rotated = fingerprint('server2.crt');
      fs.copyFileSync(at('server2.crt'), at('server.crt'));
      fs.copyFileSync(at('server2.key'), at('server.key'));
      fs.writeFileSync(file, webConfig(bcrypt.hashSync('second-password', 10)));
      await until(
        'new certificate served',
        () => get(port, '/healthz').then((r) => r.fingerprint),
        (fp) => fp === rotated,
      );
      await until(
        'old password refused',
        () => get(port, '/metrics', { user: 'prometheus', password: 'first-password' }).then((r) => r.status),
        (s) => s === 401,
      );
      const now = await get(port, '/metrics', { user: 'prometheus', password: 'second-password' });
      assert.deepEqual(now, { status: 200, fingerprint: rotated });
      assert.equal(listenerInode(port), inode);
      assert.equal(exporter.child.exitCode, null);
      // Prometheus still has the old password
      const t = await until(
        'old password job down',
        () => target('with-credentials'),
        (x) => x.health === 'down',
      );
      assert.equal(t.lastError, 'server returned HTTP status 401 Unauthorized');
    });

    it('keeps the last good configuration when the file turns bad, and says so once', async function () {
      const errors = () => exporter.stderr.split('\n').filter((l) => l.includes('level=error'));
      const before = errors().length;
      fs.writeFileSync(file, 'tls_server_config: [unclosed');
      await until(
        'error logged',
        async () => errors().length,
        (n) => n > before,
      );
      // several more polls of the same bad file
      await sleep(3_000);
      const logged = errors().slice(before);
      assert.equal(logged.length, 1, logged.join('\n'));
      assert.match(logged[0]!, /msg="web config not applied: the last good one stays" err=".*web\.yml: not YAML: Flow sequence/);
      assert.equal((await get(port, '/metrics', { user: 'prometheus', password: 'second-password' })).status, 200);
      assert.equal((await get(port, '/metrics', { user: 'prometheus', password: 'first-password' })).status, 401);
      assert.equal(exporter.child.exitCode, null);
    });
  });
});
