// SPDX-License-Identifier: Apache-2.0
// --web.config.file: TLS, client certificates and basic auth for the HTTP
// endpoints, in the format of Prometheus' exporter-toolkit (node_exporter's
// and every exporter built on it), so that a file written for them works
// here. What Node.js's TLS can honour is supported; any other key is refused
// by name, never ignored: a security setting that silently does nothing is
// worse than none. Paths in the file are relative to its directory.
import fs from 'node:fs';
import path from 'node:path';
import tls from 'node:tls';
import { isMap, parseDocument } from 'yaml';
import { UsageError } from './errors';

export const CLIENT_AUTH_TYPES = [
  'NoClientCert',
  'RequestClientCert',
  'RequireAnyClientCert',
  'VerifyClientCertIfGiven',
  'RequireAndVerifyClientCert',
] as const;
export type ClientAuthType = (typeof CLIENT_AUTH_TYPES)[number];

/** exporter-toolkit's TLS versions, as OpenSSL names them. */
const TLS_VERSIONS: Readonly<Record<string, tls.SecureVersion>> = { TLS10: 'TLSv1', TLS11: 'TLSv1.1', TLS12: 'TLSv1.2', TLS13: 'TLSv1.3' };

/** Go's names of the TLS 1.2 cipher suites it allows (crypto/tls
 * CipherSuites()), as OpenSSL names them. TLS 1.3's suites are not
 * configurable in Go either. */
const CIPHER_SUITES: Readonly<Record<string, string>> = {
  TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256: 'ECDHE-ECDSA-AES128-GCM-SHA256',
  TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384: 'ECDHE-ECDSA-AES256-GCM-SHA384',
  TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256: 'ECDHE-RSA-AES128-GCM-SHA256',
  TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384: 'ECDHE-RSA-AES256-GCM-SHA384',
  TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256: 'ECDHE-ECDSA-CHACHA20-POLY1305',
  TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256: 'ECDHE-RSA-CHACHA20-POLY1305',
  TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA: 'ECDHE-ECDSA-AES128-SHA',
  TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA: 'ECDHE-ECDSA-AES256-SHA',
  TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA: 'ECDHE-RSA-AES128-SHA',
  TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA: 'ECDHE-RSA-AES256-SHA',
};

/** Go's curve names, as OpenSSL names them. */
const CURVES: Readonly<Record<string, string>> = { CurveP256: 'P-256', CurveP384: 'P-384', CurveP521: 'P-521', X25519: 'X25519' };

/** The response headers exporter-toolkit lets a file set. */
const HEADERS = ['Content-Security-Policy', 'X-Frame-Options', 'X-Content-Type-Options', 'X-XSS-Protection', 'Strict-Transport-Security'];

/** A bcrypt hash: $2a$, $2b$ or $2y$ (htpasswd -B), a two-digit cost, 22
 * characters of salt and 31 of hash. */
const BCRYPT = /^\$2[aby]\$(\d\d)\$[./A-Za-z0-9]{53}$/;

export interface TlsSettings {
  /** what tls.createSecureContext takes (cert, key, ca, versions, ciphers) */
  context: tls.SecureContextOptions;
  clientAuth: ClientAuthType;
  /** a client certificate must name one of these (DNS, IP, e-mail or URI SAN) */
  allowedSans?: readonly string[];
}

export interface WebConfig {
  /** the file, absolute */
  file: string;
  /** undefined: plain HTTP */
  tls?: TlsSettings;
  /** headers of every response */
  headers: Readonly<Record<string, string>>;
  /** user name -> bcrypt hash; empty: no basic auth */
  users: ReadonlyMap<string, string>;
  /** the files the configuration read, itself first: what to watch */
  files: readonly string[];
}

/** Reads and checks a web configuration file; throws UsageError with one
 * line naming the file, the key and the fix. */
export function loadWebConfig(file: string): WebConfig {
  const abs = path.resolve(file);
  const where = `--web.config.file ${file}`;
  const files = [abs];
  const read = (p: string, key: string): Buffer => {
    const full = path.resolve(path.dirname(abs), p);
    files.push(full);
    try {
      return fs.readFileSync(full);
    } catch (err) {
      throw new UsageError(`${where}: ${key} ${p}: ${fileProblem(err as NodeJS.ErrnoException)}`);
    }
  };
  let text: string;
  try {
    text = fs.readFileSync(abs, 'utf8');
  } catch (err) {
    throw new UsageError(`${where}: ${fileProblem(err as NodeJS.ErrnoException)}`);
  }
  const doc = parseDocument(text, { uniqueKeys: true, prettyErrors: true });
  const bad = doc.errors[0];
  if (bad) throw new UsageError(`${where}: not YAML: ${bad.message.split('\n')[0]!.replace(/:$/, '')}; fix the file`);
  if (doc.contents !== null && !isMap(doc.contents)) throw new UsageError(`${where}: not a map of settings; see the README's "Protecting /metrics"`);
  const top = section(where, '', doc.toJS() ?? {});
  const fail = (key: string, problem: string): never => {
    throw new UsageError(`${where}: ${key}: ${problem}`);
  };
  for (const key of Object.keys(top)) {
    if (!['tls_server_config', 'http_server_config', 'basic_auth_users'].includes(key)) {
      fail(
        key,
        `${key === 'rate_limit' ? 'not supported by bpfnet-exporter' : 'not a setting'}; remove it (settings: tls_server_config, http_server_config, basic_auth_users)`,
      );
    }
  }
  const tlsConfig =
    top.tls_server_config === undefined || top.tls_server_config === null
      ? undefined
      : tlsSettings(section(where, 'tls_server_config', top.tls_server_config), read, fail);
  const headers: Record<string, string> = {};
  const http = top.http_server_config === undefined || top.http_server_config === null ? {} : section(where, 'http_server_config', top.http_server_config);
  for (const [key, value] of Object.entries(http)) {
    if (key === 'http2') {
      // HTTP/1.1 is served either way, as exporter-toolkit does without TLS
      if (typeof value !== 'boolean') fail('http_server_config.http2', 'give true or false');
    } else if (key === 'headers') {
      for (const [name, v] of Object.entries(section(where, 'http_server_config.headers', value ?? {}))) {
        if (!HEADERS.includes(name)) fail(`http_server_config.headers.${name}`, `not a header that can be set; give some of ${HEADERS.join(', ')}`);
        if (typeof v !== 'string') fail(`http_server_config.headers.${name}`, 'give a string');
        if (v !== '') headers[name] = v as string;
      }
    } else fail(`http_server_config.${key}`, 'not a setting; remove it (settings: http2, headers)');
  }
  const users = new Map<string, string>();
  const auth = top.basic_auth_users === undefined || top.basic_auth_users === null ? {} : section(where, 'basic_auth_users', top.basic_auth_users);
  for (const [user, hash] of Object.entries(auth)) {
    const key = `basic_auth_users.${user}`;
    if (user === '' || user.includes(':')) fail(key, 'a user name must be non-empty and without ":" (basic auth cannot send one)');
    if (typeof hash !== 'string' || !BCRYPT.test(hash)) fail(key, 'not a bcrypt hash; make one with htpasswd -nbBC 10 "" PASSWORD | tr -d \':\\n\'');
    const cost = Number(BCRYPT.exec(hash as string)![1]);
    if (cost < 4 || cost > 31) fail(key, `bcrypt cost ${cost}: give a hash of cost 4 to 31 (10 is usual)`);
    users.set(user, hash as string);
  }
  return { file: abs, tls: tlsConfig, headers, users, files };
}

function tlsSettings(t: Record<string, unknown>, read: (p: string, key: string) => Buffer, fail: (key: string, problem: string) => never): TlsSettings {
  const known = [
    'cert',
    'key',
    'client_ca',
    'cert_file',
    'key_file',
    'client_ca_file',
    'client_auth_type',
    'client_allowed_sans',
    'min_version',
    'max_version',
    'cipher_suites',
    'prefer_server_cipher_suites',
    'curve_preferences',
  ];
  for (const key of Object.keys(t)) {
    if (!known.includes(key)) fail(`tls_server_config.${key}`, `not a setting; remove it (settings: ${known.join(', ')})`);
  }
  const str = (key: string): string | undefined => {
    const v = t[key];
    if (v === undefined || v === null || v === '') return undefined;
    if (typeof v !== 'string') fail(`tls_server_config.${key}`, 'give a string');
    return v as string;
  };
  const list = (key: string): string[] | undefined => {
    const v = t[key];
    if (v === undefined || v === null) return undefined;
    if (!Array.isArray(v) || v.some((s) => typeof s !== 'string')) fail(`tls_server_config.${key}`, 'give a list of strings');
    return v as string[];
  };
  // each of cert, key and client CA inline or from a file, not both
  const pem = (inline: string, file: string): Buffer | undefined => {
    const text = str(inline);
    const name = str(file);
    if (text !== undefined && name !== undefined) fail(`tls_server_config.${inline}`, `give ${inline} or ${file}, not both`);
    return text !== undefined ? Buffer.from(text) : name !== undefined ? read(name, `tls_server_config.${file}`) : undefined;
  };
  const cert = pem('cert', 'cert_file');
  const key = pem('key', 'key_file');
  const ca = pem('client_ca', 'client_ca_file');
  if (!cert) fail('tls_server_config.cert_file', 'missing: TLS needs the server certificate (cert_file, or cert inline)');
  if (!key) fail('tls_server_config.key_file', 'missing: TLS needs the private key of the certificate (key_file, or key inline)');
  const clientAuth = (str('client_auth_type') ?? 'NoClientCert') as ClientAuthType;
  if (!CLIENT_AUTH_TYPES.includes(clientAuth))
    fail('tls_server_config.client_auth_type', `"${clientAuth}" is not a client auth type; give one of ${CLIENT_AUTH_TYPES.join(', ')}`);
  if (ca && clientAuth === 'NoClientCert')
    fail(
      'tls_server_config.client_ca_file',
      'a client CA with client_auth_type NoClientCert; set client_auth_type RequireAndVerifyClientCert, or remove the CA',
    );
  if (!ca && (clientAuth === 'VerifyClientCertIfGiven' || clientAuth === 'RequireAndVerifyClientCert'))
    fail('tls_server_config.client_ca_file', `missing: client_auth_type ${clientAuth} verifies client certificates against it`);
  const allowedSans = list('client_allowed_sans');
  if (allowedSans?.length && clientAuth !== 'RequireAnyClientCert' && clientAuth !== 'RequireAndVerifyClientCert')
    fail(
      'tls_server_config.client_allowed_sans',
      'needs client_auth_type RequireAndVerifyClientCert (or RequireAnyClientCert): a client without a certificate has no SAN to match',
    );
  const version = (k: string, dflt: string): tls.SecureVersion => {
    const v = str(k) ?? dflt;
    const named = TLS_VERSIONS[v];
    if (!named) fail(`tls_server_config.${k}`, `"${v}" is not a TLS version; give one of ${Object.keys(TLS_VERSIONS).join(', ')}`);
    return named!;
  };
  const minVersion = version('min_version', 'TLS12');
  const maxVersion = version('max_version', 'TLS13');
  if (Object.values(TLS_VERSIONS).indexOf(minVersion) > Object.values(TLS_VERSIONS).indexOf(maxVersion))
    fail('tls_server_config.min_version', 'above max_version; give a min_version at most max_version');
  const ciphers = list('cipher_suites')?.map(
    (c) => CIPHER_SUITES[c] ?? fail('tls_server_config.cipher_suites', `"${c}" is not supported; give some of ${Object.keys(CIPHER_SUITES).join(', ')}`),
  );
  const curves = list('curve_preferences')?.map(
    (c) => CURVES[c] ?? fail('tls_server_config.curve_preferences', `"${c}" is not supported; give some of ${Object.keys(CURVES).join(', ')}`),
  );
  const prefer = t.prefer_server_cipher_suites ?? true;
  if (typeof prefer !== 'boolean') fail('tls_server_config.prefer_server_cipher_suites', 'give true or false');
  const context: tls.SecureContextOptions = {
    cert,
    key,
    ca,
    minVersion,
    maxVersion,
    honorCipherOrder: prefer as boolean,
    ...(ciphers?.length ? { ciphers: ciphers.join(':') } : {}),
    ...(curves?.length ? { ecdhCurve: curves.join(':') } : {}),
  };
  checkContext(context, t, fail);
  return { context, clientAuth, ...(allowedSans?.length ? { allowedSans } : {}) };
}

/** Builds the context once, so that a bad certificate, a key of another
 * certificate or a bad CA is found at start, named by its key. */
function checkContext(context: tls.SecureContextOptions, t: Record<string, unknown>, fail: (key: string, problem: string) => never): void {
  const key = (inline: string, file: string) => `tls_server_config.${t[inline] ? inline : file}`;
  const attempt = (what: string, o: tls.SecureContextOptions): void => {
    try {
      tls.createSecureContext(o);
    } catch (err) {
      fail(what, `cannot read it (${openSslReason(err)}); give a PEM file${what.includes('key') ? ' with the private key of the certificate' : ''}`);
    }
  };
  attempt(key('cert', 'cert_file'), { cert: context.cert });
  attempt(key('client_ca', 'client_ca_file'), { ca: context.ca });
  try {
    tls.createSecureContext({ cert: context.cert, key: context.key });
  } catch (err) {
    const m = (err as Error).message;
    const mismatch = /mismatch/i.test(m);
    fail(
      key('key', 'key_file'),
      mismatch
        ? 'not the private key of the certificate; give the key the certificate was made for'
        : `cannot read it (${openSslReason(err)}); give a PEM file with the private key of the certificate`,
    );
  }
  try {
    tls.createSecureContext(context);
  } catch (err) {
    fail('tls_server_config', `${openSslReason(err)}; check the versions, cipher_suites and curve_preferences`);
  }
}

/** "error:0480006C:PEM routines::no start line" -> "no start line" */
function openSslReason(err: unknown): string {
  return (err as Error).message.replace(/^error:[0-9A-Fa-f]+:[^:]*::?/, '');
}

function section(where: string, key: string, value: unknown): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value))
    throw new UsageError(`${where}: ${key || 'the file'}: not a map; see the README's "Protecting /metrics"`);
  return value as Record<string, unknown>;
}

function fileProblem(err: NodeJS.ErrnoException): string {
  switch (err.code) {
    case 'ENOENT':
      return 'no such file; give the path of an existing file (relative paths in the file are from its directory)';
    case 'EACCES':
    case 'EPERM':
      return 'permission denied; make it readable by the exporter';
    case 'EISDIR':
      return 'a directory; give a file';
    default:
      return `cannot read it: ${err.message}`;
  }
}
