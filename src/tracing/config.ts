// SPDX-License-Identifier: Apache-2.0
// Whether spans are wanted and how, from --otlp-endpoint, --trace-sample-ratio
// and the standard OTEL_* variables, all checked before anything loads (a bad
// value is one line and exit status 2). Without an endpoint nothing is read:
// no span work is done, so no OTEL_* variable matters.
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
  /** the traces URL */
  url: string;
  protocol: OtlpProtocol;
  ratio: number;
  /** where spans go, for the log */
  target: string;
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

/** Checks a collector URL: http or https, and nothing in it that would not be
 * sent. name: where it came from, for the message. */
export function checkEndpoint(name: string, raw: string): URL {
  const shown = (v: string) => `${name} ${v}`;
  let u: URL;
  try {
    u = new URL(raw);
  } catch {
    throw new UsageError(`${shown(raw)}: not a URL; give the collector's OTLP/HTTP address, ${EXAMPLE}`);
  }
  if (u.username || u.password) {
    // never echo a password
    const safe = `${u.protocol}//***@${u.host}${u.pathname}`;
    throw new UsageError(
      `${shown(safe)}: user and password in the URL are not sent; remove them and give the credentials as a header, such as OTEL_EXPORTER_OTLP_HEADERS=Authorization=Basic%20<base64 of user:password>`,
    );
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') {
    throw new UsageError(`${shown(raw)}: not http or https; give the collector's OTLP/HTTP address, ${EXAMPLE}`);
  }
  if (u.hash) throw new UsageError(`${shown(raw)}: a #fragment is never sent; remove it`);
  return u;
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
  let url: string;
  const specific = envString(env, 'OTEL_EXPORTER_OTLP_TRACES_ENDPOINT');
  const general = envString(env, 'OTEL_EXPORTER_OTLP_ENDPOINT');
  if (spec.endpoint !== undefined) {
    url = tracesUrl(checkEndpoint('--otlp-endpoint', spec.endpoint));
  } else if (specific !== undefined) {
    url = checkEndpoint('OTEL_EXPORTER_OTLP_TRACES_ENDPOINT', specific).href;
  } else if (general !== undefined) {
    url = tracesUrl(checkEndpoint('OTEL_EXPORTER_OTLP_ENDPOINT', general));
  } else {
    return undefined;
  }
  const off = envBoolean(env, 'OTEL_SDK_DISABLED') ? 'OTEL_SDK_DISABLED=true' : tracesExporterNone(env) ? 'OTEL_TRACES_EXPORTER=none' : undefined;
  if (off) {
    // the variables are how a deployment turns spans off; a flag that asks
    // for them at the same time is a contradiction, not a choice to guess
    if (spec.endpoint !== undefined) throw new UsageError(`--otlp-endpoint asks for spans and ${off} turns them off; give one or the other`);
    return undefined;
  }
  checkOtlpHeaders(env);
  checkResourceAttributes(env);
  return {
    url,
    protocol: otlpProtocol(env),
    ratio: r ?? samplerRatio(env),
    target: shownUrl(url),
    timeoutMillis: otlpTimeoutMillis(env, OTLP_TIMEOUT_MS),
    compression: otlpCompression(env),
    queue: queueSettingsFromEnv(env),
    failureLogIntervalMs: failureLogInterval(env),
  };
}
