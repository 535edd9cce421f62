// SPDX-License-Identifier: Apache-2.0
// Reading --web.config.file (exporter-toolkit's format) into what Node.js's
// TLS takes, basic auth against bcrypt hashes with its cache, and the names
// of a client certificate. Certificates from openssl, hashes from bcryptjs.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import bcrypt from 'bcryptjs';
import { envName, prepareArgs } from '../../src/args';
import { AUTH_CACHE_SIZE, BasicAuth, parseBasic } from '../../src/basic-auth';
import { subjectAltNames } from '../../src/server';
import { loadWebConfig } from '../../src/web-config';

describe('web configuration file', function () {
  let dir: string;
  const write = (name: string, text: string) => {
    fs.writeFileSync(path.join(dir, name), text);
    return path.join(dir, name);
  };

  before(function () {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bpfnet-web-config-unit-'));
    fs.mkdirSync(path.join(dir, 'tls'));
    execFileSync(
      'openssl',
      [
        'req',
        '-x509',
        '-newkey',
        'ec',
        '-pkeyopt',
        'ec_paramgen_curve:P-256',
        '-nodes',
        '-keyout',
        'tls/a.key',
        '-out',
        'tls/a.crt',
        '-days',
        '1',
        '-subj',
        '/CN=a',
      ],
      { cwd: dir, stdio: 'ignore' },
    );
  });
  after(function () {
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it("reads every supported key into Node.js's TLS options, paths from the file's directory", function () {
    const hash = bcrypt.hashSync('pw', 4);
    const file = write(
      'full.yml',
      [
        'tls_server_config:',
        '  cert_file: tls/a.crt',
        '  key_file: tls/a.key',
        '  client_ca_file: tls/a.crt',
        '  client_auth_type: RequireAndVerifyClientCert',
        '  client_allowed_sans: [prometheus.monitoring, 10.0.0.1]',
        '  min_version: TLS13',
        '  max_version: TLS13',
        '  cipher_suites: [TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256]',
        '  prefer_server_cipher_suites: false',
        '  curve_preferences: [X25519, CurveP256]',
        'http_server_config:',
        '  http2: false',
        '  headers:',
        '    X-Frame-Options: deny',
        '    Strict-Transport-Security: ""',
        'basic_auth_users:',
        `  prometheus: '${hash}'`,
      ].join('\n'),
    );
    const c = loadWebConfig(file);
    const pem = (name: string) => fs.readFileSync(path.join(dir, 'tls', name));
    assert.deepEqual(c, {
      file,
      tls: {
        context: {
          cert: pem('a.crt'),
          key: pem('a.key'),
          ca: pem('a.crt'),
          minVersion: 'TLSv1.3',
          maxVersion: 'TLSv1.3',
          honorCipherOrder: false,
          ciphers: 'ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-CHACHA20-POLY1305',
          ecdhCurve: 'X25519:P-256',
        },
        clientAuth: 'RequireAndVerifyClientCert',
        allowedSans: ['prometheus.monitoring', '10.0.0.1'],
      },
      headers: { 'X-Frame-Options': 'deny' },
      users: new Map([['prometheus', hash]]),
      files: [file, path.join(dir, 'tls/a.crt'), path.join(dir, 'tls/a.key'), path.join(dir, 'tls/a.crt')],
    });
  });

  it('takes an empty file as plain HTTP without auth, and inline PEM', function () {
    assert.deepEqual(loadWebConfig(write('empty.yml', '')), {
      file: path.join(dir, 'empty.yml'),
      tls: undefined,
      headers: {},
      users: new Map(),
      files: [path.join(dir, 'empty.yml')],
    });
    const crt = fs.readFileSync(path.join(dir, 'tls/a.crt'), 'utf8');
    const key = fs.readFileSync(path.join(dir, 'tls/a.key'), 'utf8');
    const inline = loadWebConfig(write('inline.yml', `tls_server_config:\n  cert: ${JSON.stringify(crt)}\n  key: ${JSON.stringify(key)}\n`));
    assert.equal(inline.tls?.clientAuth, 'NoClientCert');
    assert.equal(inline.tls?.context.minVersion, 'TLSv1.2');
    assert.equal(inline.tls?.context.maxVersion, 'TLSv1.3');
    assert.equal(String(inline.tls?.context.cert), crt);
  });

  const refused: [string, string, string][] = [
    [
      'a cert inline and from a file',
      'tls_server_config:\n  cert: x\n  cert_file: tls/a.crt\n  key_file: tls/a.key',
      'tls_server_config.cert: give cert or cert_file, not both',
    ],
    [
      'TLS without a key',
      'tls_server_config:\n  cert_file: tls/a.crt',
      'tls_server_config.key_file: missing: TLS needs the private key of the certificate (key_file, or key inline)',
    ],
    [
      'verification without a CA',
      'tls_server_config:\n  cert_file: tls/a.crt\n  key_file: tls/a.key\n  client_auth_type: VerifyClientCertIfGiven',
      'tls_server_config.client_ca_file: missing: client_auth_type VerifyClientCertIfGiven verifies client certificates against it',
    ],
    [
      'allowed SANs that a client without a certificate would pass',
      'tls_server_config:\n  cert_file: tls/a.crt\n  key_file: tls/a.key\n  client_auth_type: RequestClientCert\n  client_allowed_sans: [a]',
      'tls_server_config.client_allowed_sans: needs client_auth_type RequireAndVerifyClientCert (or RequireAnyClientCert): a client without a certificate has no SAN to match',
    ],
    [
      'a cipher suite Go does not offer',
      'tls_server_config:\n  cert_file: tls/a.crt\n  key_file: tls/a.key\n  cipher_suites: [TLS_RSA_WITH_RC4_128_SHA]',
      'tls_server_config.cipher_suites: "TLS_RSA_WITH_RC4_128_SHA" is not supported; give some of TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384, TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256, TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256, TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA, TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA, TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA, TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA',
    ],
    [
      'a minimum above the maximum',
      'tls_server_config:\n  cert_file: tls/a.crt\n  key_file: tls/a.key\n  min_version: TLS13\n  max_version: TLS12',
      'tls_server_config.min_version: above max_version; give a min_version at most max_version',
    ],
    ['a list where a map belongs', '- a\n- b', 'not a map of settings; see the README\'s "Protecting /metrics"'],
    ['a key given twice', 'basic_auth_users: {}\nbasic_auth_users: {}', 'not YAML: Map keys must be unique at line 2, column 1; fix the file'],
    [
      'a user name with a colon',
      "basic_auth_users:\n  'a:b': x",
      'basic_auth_users.a:b: a user name must be non-empty and without ":" (basic auth cannot send one)',
    ],
    ['http2 that is not a boolean', 'http_server_config:\n  http2: yes please', 'http_server_config.http2: give true or false'],
  ];
  for (const [what, text, message] of refused) {
    it(`refuses ${what}, naming the file and the key`, function () {
      const file = write('bad.yml', text);
      assert.throws(() => loadWebConfig(file), { name: 'UsageError', message: `--web.config.file ${file}: ${message}` });
    });
  }
});

describe('basic auth', function () {
  it('reads the user and password of an Authorization header', function () {
    const basic = (s: string) => `Basic ${Buffer.from(s).toString('base64')}`;
    assert.deepEqual(parseBasic(basic('prometheus:pa:ss')), { user: 'prometheus', password: 'pa:ss' });
    assert.deepEqual(parseBasic(basic('prometheus:')), { user: 'prometheus', password: '' });
    assert.equal(parseBasic(basic('no-colon')), undefined);
    assert.equal(parseBasic('Bearer abc'), undefined);
    assert.equal(parseBasic(undefined), undefined);
  });

  const header = (user: string, password: string) => `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;

  it('checks passwords against bcrypt hashes, and a changed hash drops the old password at once', async function () {
    const auth = new BasicAuth(new Map([['prometheus', bcrypt.hashSync('first', 4)]]));
    assert.equal(auth.enabled, true);
    assert.equal(await auth.check(header('prometheus', 'first')), true);
    assert.equal(await auth.check(header('prometheus', 'first')), true); // from the cache
    assert.equal(await auth.check(header('prometheus', 'wrong')), false);
    assert.equal(await auth.check(header('grafana', 'first')), false);
    assert.equal(await auth.check(undefined), false);
    auth.setUsers(new Map([['prometheus', bcrypt.hashSync('second', 4)]]));
    assert.equal(await auth.check(header('prometheus', 'first')), false);
    assert.equal(await auth.check(header('prometheus', 'second')), true);
    // htpasswd -B writes $2y$, the same algorithm as $2b$
    auth.setUsers(new Map([['prometheus', bcrypt.hashSync('third', 4).replace(/^\$2b\$/, '$2y$')]]));
    assert.equal(await auth.check(header('prometheus', 'third')), true);
    auth.setUsers(new Map());
    assert.equal(auth.enabled, false);
    assert.equal(await auth.check(header('prometheus', 'second')), false);
  });

  it(`remembers at most ${AUTH_CACHE_SIZE} successes`, async function () {
    const users = new Map(Array.from({ length: AUTH_CACHE_SIZE + 10 }, (_, i) => [`user${i}`, bcrypt.hashSync(`pw${i}`, 4)] as [string, string]));
    const auth = new BasicAuth(users);
    for (const [user] of users) assert.equal(await auth.check(header(user, `pw${user.slice(4)}`)), true);
    assert.equal((auth as unknown as { cache: Set<string> }).cache.size, AUTH_CACHE_SIZE);
  });
});

describe('client certificate names', function () {
  it("reads Node.js's subjectaltname text, quoted names included", function () {
    assert.deepEqual(subjectAltNames('DNS:prometheus.monitoring, IP Address:10.0.0.1, email:a@b.c, URI:spiffe://cluster/ns/monitoring'), [
      'prometheus.monitoring',
      '10.0.0.1',
      'a@b.c',
      'spiffe://cluster/ns/monitoring',
    ]);
    assert.deepEqual(subjectAltNames('DNS:"a, b", DNS:c'), ['a, b', 'c']);
    assert.deepEqual(subjectAltNames(''), []);
  });
});

describe('--web.config.file as an environment variable', function () {
  it('is BPFNET_WEB_CONFIG_FILE', function () {
    assert.equal(envName('web.config.file'), 'BPFNET_WEB_CONFIG_FILE');
    const flags = new Map([['web.config.file', 'string' as const]]);
    const r = prepareArgs([], { BPFNET_WEB_CONFIG_FILE: '/etc/web.yml' }, flags, new Set(flags.keys()));
    assert.deepEqual(r.argv, ['--web.config.file=/etc/web.yml']);
    assert.deepEqual([...r.fromEnv], [['web.config.file', 'BPFNET_WEB_CONFIG_FILE']]);
  });
});
