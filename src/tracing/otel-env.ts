// SPDX-License-Identifier: Apache-2.0
// The standard OTEL_* variables that shape the spans, read and checked as the
// OpenTelemetry specification defines them, before anything loads. A value
// the SDK would ignore, clamp or misread (and so a setting that silently does
// not apply) is refused with one line naming the variable and the fix
// (UsageError: exit status 2). As the specification says, an empty value is
// the same as none, and names of known values are not case-sensitive.
// Values of headers are never repeated in a message: they hold credentials.
import { UsageError } from '../errors';

export type Env = NodeJS.ProcessEnv;

/** The value of name, trimmed; undefined when unset or empty. */
export function envString(env: Env, name: string): string | undefined {
  const v = env[name]?.trim();
  return v ? v : undefined;
}

/** The signal-specific variable if set, else the general one. */
export function tracesOrGeneral(env: Env, suffix: string): { name: string; value: string } | undefined {
  for (const name of [`OTEL_EXPORTER_OTLP_TRACES_${suffix}`, `OTEL_EXPORTER_OTLP_${suffix}`]) {
    const value = envString(env, name);
    if (value !== undefined) return { name, value };
  }
  return undefined;
}

/** The specification's integer range: 0 to 2^31 - 1 (also what a timer takes). */
const MAX_INTEGER = 2 ** 31 - 1;

/** A whole number from min up, or undefined when unset. */
export function envInteger(env: Env, name: string, min: number, fix: string): number | undefined {
  const raw = envString(env, name);
  if (raw === undefined) return undefined;
  const n = /^\d+$/.test(raw) ? Number(raw) : NaN;
  if (!(n >= min && n <= MAX_INTEGER)) throw new UsageError(`${name} ${raw}: not a whole number from ${min} to ${MAX_INTEGER}; give ${fix}`);
  return n;
}

/** true or false, not case-sensitive; undefined when unset. */
export function envBoolean(env: Env, name: string): boolean | undefined {
  const raw = envString(env, name);
  if (raw === undefined) return undefined;
  const v = raw.toLowerCase();
  if (v === 'true' || v === 'false') return v === 'true';
  throw new UsageError(`${name} ${raw}: give true or false`);
}

/** A ratio from 0 to 1 written as a plain decimal number. */
export function parseRatio(raw: string): number | undefined {
  if (!/^(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(raw)) return undefined;
  const n = Number(raw);
  return n >= 0 && n <= 1 ? n : undefined;
}

const SAMPLERS = ['always_on', 'always_off', 'traceidratio'];
/** Known to the specification and its contrib, but not something this exporter can do. */
const OTHER_SAMPLERS = ['jaeger_remote', 'parentbased_jaeger_remote', 'xray'];

/** The share of traces OTEL_TRACES_SAMPLER (and _ARG) ask for. Connection
 * spans have no remote parent, so a parentbased_ sampler is its root's. */
export function samplerRatio(env: Env): number {
  const raw = envString(env, 'OTEL_TRACES_SAMPLER');
  const name = (raw ?? 'parentbased_always_on').toLowerCase();
  const root = name.replace(/^parentbased_/, '');
  if (!SAMPLERS.includes(root)) {
    const choices = 'always_on, always_off, traceidratio (with OTEL_TRACES_SAMPLER_ARG) or their parentbased_ forms, or use --trace-sample-ratio';
    if (OTHER_SAMPLERS.includes(name)) throw new UsageError(`OTEL_TRACES_SAMPLER ${raw}: not supported by bpfnet-exporter; give ${choices}`);
    throw new UsageError(`OTEL_TRACES_SAMPLER ${raw}: not a sampler; give ${choices}`);
  }
  if (root === 'always_on') return 1;
  if (root === 'always_off') return 0;
  const arg = envString(env, 'OTEL_TRACES_SAMPLER_ARG');
  if (arg === undefined) return 1; // the specification's default for traceidratio
  const ratio = parseRatio(arg);
  if (ratio === undefined) throw new UsageError(`OTEL_TRACES_SAMPLER_ARG ${arg}: give the share of traces to keep, a number from 0 to 1 (such as 0.25)`);
  return ratio;
}

/** OTEL_TRACES_EXPORTER: whether it says none (no spans); only otlp is spoken. */
export function tracesExporterNone(env: Env): boolean {
  const raw = envString(env, 'OTEL_TRACES_EXPORTER');
  if (raw === undefined) return false;
  const names = raw
    .split(',')
    .map((s) => s.trim().toLowerCase())
    .filter(Boolean);
  if (names.length === 1 && names[0] === 'none') return true;
  const other = names.find((n) => n !== 'otlp');
  if (other !== undefined) throw new UsageError(`OTEL_TRACES_EXPORTER ${raw}: bpfnet-exporter sends spans over OTLP only; give otlp, or none for no spans`);
  return false;
}

/** OTLP over HTTP, protobuf (the specification's default) or JSON, or over gRPC. */
export type OtlpProtocol = 'http/protobuf' | 'http/json' | 'grpc';

export function otlpProtocol(env: Env): OtlpProtocol {
  const given = tracesOrGeneral(env, 'PROTOCOL');
  if (!given) return 'http/protobuf';
  const p = given.value.toLowerCase();
  if (p === 'http/protobuf' || p === 'http/json' || p === 'grpc') return p;
  throw new UsageError(`${given.name} ${given.value}: not supported; give http/protobuf (the default), http/json or grpc`);
}

export type OtlpCompression = 'gzip' | 'none';

export function otlpCompression(env: Env): OtlpCompression {
  const given = tracesOrGeneral(env, 'COMPRESSION');
  if (!given) return 'none';
  const c = given.value.toLowerCase();
  if (c === 'gzip' || c === 'none') return c;
  throw new UsageError(`${given.name} ${given.value}: give gzip or none (the default)`);
}

/** OTEL_EXPORTER_OTLP_(TRACES_)TIMEOUT: milliseconds for one export, retries included. */
export function otlpTimeoutMillis(env: Env, fallback: number): number {
  const specific = envInteger(env, 'OTEL_EXPORTER_OTLP_TRACES_TIMEOUT', 1, `milliseconds, such as ${fallback}`);
  const general = envInteger(env, 'OTEL_EXPORTER_OTLP_TIMEOUT', 1, `milliseconds, such as ${fallback}`);
  return specific ?? general ?? fallback;
}

/** An HTTP header name (RFC 9110 token) and what Node.js lets a value hold. */
const HEADER_NAME = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const BAD_HEADER_VALUE = /[^\t\x20-\x7e\x80-\xff]/;
/** the SDK's limit for a resource attribute's key and value */
const MAX_ATTRIBUTE_LENGTH = 255;

/** A list of key=value entries separated by commas, percent-encoded, as the
 * specification has OTEL_EXPORTER_OTLP_HEADERS and OTEL_RESOURCE_ATTRIBUTES
 * (W3C baggage without properties). kind decides what else is checked:
 * header names and values must be sendable (and a header value may hold
 * '=', as base64 does); a resource attribute must have exactly one '='. */
export function parseKeyValueList(name: string, raw: string, kind: 'headers' | 'attributes'): [string, string][] {
  const example = kind === 'headers' ? 'Authorization=Bearer%20TOKEN,X-Tenant=a' : 'deployment.environment=prod,team=net';
  const fix = `give comma-separated key=value entries, percent-encoding ',' '=' ';' '%' and spaces in them (such as ${example})`;
  const entries: [string, string][] = [];
  raw.split(',').forEach((member, i) => {
    if (member.trim() === '') return;
    // a header's value is never shown: it may be a credential
    const which = kind === 'headers' ? `entry ${i + 1}` : `entry ${JSON.stringify(member.trim())}`;
    const eq = member.indexOf('=');
    if (eq < 0) throw new UsageError(`${name}: ${which} has no '='; ${fix}`);
    if (kind === 'attributes' && member.indexOf('=', eq + 1) >= 0) throw new UsageError(`${name}: ${which} has more than one '='; ${fix}`);
    if (member.includes(';')) throw new UsageError(`${name}: ${which} has a ';' (baggage properties are not supported); ${fix}`);
    const rawKey = member.slice(0, eq).trim();
    const rawValue = member.slice(eq + 1).trim();
    let key: string;
    let value: string;
    try {
      key = decodeURIComponent(rawKey);
      value = decodeURIComponent(rawValue);
    } catch {
      throw new UsageError(`${name}: ${which} has a '%' that is not followed by two hex digits of UTF-8; ${fix}`);
    }
    if (key === '') throw new UsageError(`${name}: ${which} has no key; ${fix}`);
    if (kind === 'headers') {
      if (!HEADER_NAME.test(key)) throw new UsageError(`${name}: ${which} (${JSON.stringify(key)}) is not an HTTP header name; ${fix}`);
      if (value === '') throw new UsageError(`${name}: header ${key} has no value; ${fix}`);
      if (BAD_HEADER_VALUE.test(value)) throw new UsageError(`${name}: header ${key} has a control character in its value; ${fix}`);
    } else if (key.length > MAX_ATTRIBUTE_LENGTH || value.length > MAX_ATTRIBUTE_LENGTH) {
      throw new UsageError(`${name}: ${which} is longer than ${MAX_ATTRIBUTE_LENGTH} characters in its key or value; give shorter ones`);
    }
    entries.push([key, value]);
  });
  return entries;
}

/** Checks the headers the SDK will send with every export (it reads them
 * itself, by the same rules; here a bad entry stops the start instead of
 * being skipped). */
export function checkOtlpHeaders(env: Env): void {
  for (const name of ['OTEL_EXPORTER_OTLP_HEADERS', 'OTEL_EXPORTER_OTLP_TRACES_HEADERS']) {
    const raw = envString(env, name);
    if (raw !== undefined) parseKeyValueList(name, raw, 'headers');
  }
}

/** Checks OTEL_RESOURCE_ATTRIBUTES (the SDK would drop all of it for one bad entry). */
export function checkResourceAttributes(env: Env): void {
  const raw = envString(env, 'OTEL_RESOURCE_ATTRIBUTES');
  if (raw !== undefined) parseKeyValueList('OTEL_RESOURCE_ATTRIBUTES', raw, 'attributes');
}
