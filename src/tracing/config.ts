// SPDX-License-Identifier: Apache-2.0
// Whether spans are wanted and how, from --otlp-endpoint, --trace-sample-ratio
// and the standard OTEL_* variables, all checked before anything loads (a bad
// value is one line and exit status 2). Without an endpoint nothing is read:
// no span work is done, so no OTEL_* variable matters.
import fs from 'node:fs';
import path from 'node:path';
import tls from 'node:tls';
import { UsageError } from '../errors';
import { queueSettingsFromEnv, type QueueSettings } from './export-queue';
import {
  checkOtlpHeaders,
  checkResourceAttributes,
  envBoolean,
  envInteger,
  envString,
  otlpCompression,
  otlpProtocol,
  otlpTimeoutMillis,
  samplerRatio,
  tracesExporterNone,
  tracesOrGeneral,
  type Env,
  type OtlpCompression,
  type OtlpProtocol,
} from './otel-env';

export type { OtlpProtocol } from './otel-env';

export interface TracingSpec {
  /** --otlp-endpoint: the collector's base URL, as OTEL_EXPORTER_OTLP_ENDPOINT */
  endpoint?: string;
  /** --trace-sample-ratio */
  sampleRatio?: number;
}

export interface TracingConfig {
  /** the traces URL; over gRPC, the collector's scheme://host:port */
  url: string;
  protocol: OtlpProtocol;
  ratio: number;
  /** where spans go, for the log */
  target: string;
  /** OTEL_EXPORTER_OTLP_(TRACES_)CERTIFICATE...: TLS files given */
  tls?: TlsFiles;
  /** OTEL_EXPORTER_OTLP_(TRACES_)TIMEOUT: one export, retries included */
  timeoutMillis: number;
  compression: OtlpCompression;
  queue: QueueSettings;
  /** how often export failures are summed up in the log */
  failureLogIntervalMs: number;
}

/** the specification's default for OTEL_EXPORTER_OTLP_TIMEOUT */
export const OTLP_TIMEOUT_MS = 10_000;
/** Export failures after the first are summed up once a minute. */
export const FAILURE_LOG_INTERVAL_MS = 60_000;
/** An internal knob (tests): the failure summary's interval, in ms. Not
 * BPFNET_*: those are the command line's, and it refuses names it lacks. */
export const FAILURE_LOG_INTERVAL_ENV = '_BPFNET_SPAN_FAILURE_LOG_INTERVAL_MS';

const EXAMPLE = 'such as http://localhost:4318';
/** the specification's default gRPC port */
const GRPC_EXAMPLE = 'such as http://localhost:4317';

/** Checks a collector URL: http or https, and nothing in it that would not be
 * sent. name: where it came from, for the message. */
export function checkEndpoint(name: string, raw: string, protocol: OtlpProtocol = 'http/protobuf'): URL {
  const shown = (v: string) => `${name} ${v}`;
  const address = protocol === 'grpc' ? `the collector's OTLP/gRPC address, ${GRPC_EXAMPLE}` : `the collector's OTLP/HTTP address, ${EXAMPLE}`;
  let u: URL;
  try {
    u = new URL(raw);
  } catch {
    throw new UsageError(`${shown(raw)}: not a URL; give ${address}`);
  }
  if (u.username || u.password) {
    // never echo a password
    const safe = `${u.protocol}//***@${u.host}${u.pathname}`;
    throw new UsageError(
      `${shown(safe)}: user and password in the URL are not sent; remove them and give the credentials as a header, such as OTEL_EXPORTER_OTLP_HEADERS=Authorization=Basic%20<base64 of user:password>`,
    );
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') {
    throw new UsageError(`${shown(raw)}: not http or https; give ${address}`);
  }
  if (u.hash) throw new UsageError(`${shown(raw)}: a #fragment is never sent; remove it`);
  return u;
}

/** OTEL_EXPORTER_OTLP_(TRACES_)INSECURE, if given. */
function insecureSetting(env: Env): { name: string; value: boolean } | undefined {
  for (const name of ['OTEL_EXPORTER_OTLP_TRACES_INSECURE', 'OTEL_EXPORTER_OTLP_INSECURE']) {
    const value = envBoolean(env, name);
    if (value !== undefined) return { name, value };
  }
  return undefined;
}

/** PEM files for TLS to the collector: the CA to trust (instead of the
 * system's), the client's key and certificate. */
export interface TlsFiles {
  ca?: Buffer;
  key?: Buffer;
  cert?: Buffer;
}

/** OTEL_EXPORTER_OTLP_(TRACES_)CERTIFICATE, CLIENT_KEY and CLIENT_CERTIFICATE,
 * read. The SDK's gRPC exporter reads them itself, and its HTTP exporters
 * would too but for our agent (collector.ts), which gets them from here;
 * where the SDK warns about a file it cannot read or use and goes on
 * without it, here each must be a readable, usable PEM file, a client key
 * comes with its certificate, and they are refused for an endpoint without
 * TLS, where they would not apply. */
export function readTlsFiles(env: Env, secure: boolean): TlsFiles | undefined {
  const [ca, key, cert] = ['CERTIFICATE', 'CLIENT_KEY', 'CLIENT_CERTIFICATE'].map((suffix) => tracesOrGeneral(env, suffix));
  const given = [ca, key, cert].filter((g) => g !== undefined);
  if (!secure && given.length) {
    throw new UsageError(`${given[0]!.name}: TLS files apply to an https endpoint, and the endpoint is http (no TLS); give an https:// endpoint, or unset it`);
  }
  const read = (g: { name: string; value: string }) => {
    try {
      return fs.readFileSync(path.resolve(g.value));
    } catch (err) {
      throw new UsageError(
        `${g.name} ${g.value}: cannot read it (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}); give a PEM file the exporter can read`,
      );
    }
  };
  const [caPem, keyPem, certPem] = [ca, key, cert].map((g) => (g ? read(g) : undefined));
  if ((key === undefined) !== (cert === undefined)) {
    const [has, lacks] = key ? [key.name, 'OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE'] : [cert!.name, 'OTEL_EXPORTER_OTLP_CLIENT_KEY'];
    throw new UsageError(`${has} is set and ${lacks} is not: a client certificate and its key go together; give both, or neither`);
  }
  try {
    tls.createSecureContext({ ca: caPem, key: keyPem, cert: certPem });
  } catch (err) {
    const names = given.map((g) => g.name).join(', ');
    throw new UsageError(`${names}: not usable for TLS (${(err as Error).message}); give PEM files, the key matching the certificate`);
  }
  return given.length ? { ca: caPem, key: keyPem, cert: certPem } : undefined;
}

/** A gRPC collector's address, scheme://host:port. Without a scheme (as the
 * specification allows for gRPC), OTEL_EXPORTER_OTLP_INSECURE=true means
 * http, else https. The service's path is fixed: a path is refused, as is an
 * INSECURE that contradicts the scheme given. */
export function grpcUrl(name: string, raw: string, env: Env): string {
  const insecure = insecureSetting(env);
  let text = raw;
  if (!/^[A-Za-z][A-Za-z0-9+.-]*:\/\//.test(raw)) {
    text = `${insecure?.value ? 'http' : 'https'}://${raw}`;
  } else if (insecure) {
    const scheme = raw.slice(0, raw.indexOf(':')).toLowerCase();
    if ((scheme === 'https') === insecure.value) {
      throw new UsageError(
        `${insecure.name}=${insecure.value} contradicts ${name} ${raw}: INSECURE applies to an endpoint without a scheme; give the endpoint as host:port, or unset ${insecure.name}`,
      );
    }
  }
  const u = checkEndpoint(name, text, 'grpc');
  if ((u.pathname !== '/' && u.pathname !== '') || u.search) {
    throw new UsageError(`${name} ${raw}: a gRPC endpoint has no path or query (the service's path is fixed); give scheme://host:port, ${GRPC_EXAMPLE}`);
  }
  return `${u.protocol}//${u.host}`;
}

/** A base URL's traces URL: its path with v1/traces appended, its query kept. */
export function tracesUrl(base: URL): string {
  return `${base.origin}${base.pathname.replace(/\/+$/, '')}/v1/traces${base.search}`;
}

/** The URL for the log: a query's values may be credentials, so only its keys. */
export function shownUrl(url: string): string {
  const u = new URL(url);
  const keys = [...u.searchParams.keys()].map((k) => `${k}=***`).join('&');
  return `${u.origin}${u.pathname}${keys ? `?${keys}` : ''}`;
}

function failureLogInterval(env: Env): number {
  return envInteger(env, FAILURE_LOG_INTERVAL_ENV, 1, `milliseconds, such as ${FAILURE_LOG_INTERVAL_MS}`) ?? FAILURE_LOG_INTERVAL_MS;
}

/** Whether spans are wanted, and how; undefined: no endpoint, no span work. */
export function resolveTracing(spec: TracingSpec, env: Env = process.env): TracingConfig | undefined {
  const r = spec.sampleRatio;
  if (r !== undefined && !(r >= 0 && r <= 1)) {
    throw new UsageError(`--trace-sample-ratio ${Number.isNaN(r) ? '(not a number)' : r}: give a ratio from 0 to 1`);
  }
  const specific = envString(env, 'OTEL_EXPORTER_OTLP_TRACES_ENDPOINT');
  const general = envString(env, 'OTEL_EXPORTER_OTLP_ENDPOINT');
  // a base URL gets /v1/traces (OTLP/HTTP); the traces endpoint is used as is
  let given: { name: string; raw: string; base: boolean };
  if (spec.endpoint !== undefined) given = { name: '--otlp-endpoint', raw: spec.endpoint, base: true };
  else if (specific !== undefined) given = { name: 'OTEL_EXPORTER_OTLP_TRACES_ENDPOINT', raw: specific, base: false };
  else if (general !== undefined) given = { name: 'OTEL_EXPORTER_OTLP_ENDPOINT', raw: general, base: true };
  else return undefined;
  const protocol = otlpProtocol(env);
  let url: string;
  if (protocol === 'grpc') url = grpcUrl(given.name, given.raw, env);
  else if (given.base) url = tracesUrl(checkEndpoint(given.name, given.raw));
  else url = checkEndpoint(given.name, given.raw).href;
  const off = envBoolean(env, 'OTEL_SDK_DISABLED') ? 'OTEL_SDK_DISABLED=true' : tracesExporterNone(env) ? 'OTEL_TRACES_EXPORTER=none' : undefined;
  if (off) {
    // the variables are how a deployment turns spans off; a flag that asks
    // for them at the same time is a contradiction, not a choice to guess
    if (spec.endpoint !== undefined) throw new UsageError(`--otlp-endpoint asks for spans and ${off} turns them off; give one or the other`);
    return undefined;
  }
  checkOtlpHeaders(env);
  checkResourceAttributes(env);
  const tlsFiles = readTlsFiles(env, new URL(url).protocol === 'https:');
  return {
    url,
    protocol,
    tls: tlsFiles,
    ratio: r ?? samplerRatio(env),
    target: shownUrl(url),
    timeoutMillis: otlpTimeoutMillis(env, OTLP_TIMEOUT_MS),
    compression: otlpCompression(env),
    queue: queueSettingsFromEnv(env),
    failureLogIntervalMs: failureLogInterval(env),
  };
}
