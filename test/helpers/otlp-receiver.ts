// SPDX-License-Identifier: Apache-2.0
// A real OTLP/HTTP trace receiver for tests: an HTTP server on loopback that
// takes POST /v1/traces in OTLP/JSON (what @opentelemetry/exporter-trace-otlp-http
// sends) or protobuf, and checks each request against the official OTLP
// message definitions (opentelemetry-proto, as generated code in
// otlp-proto-definitions): a field the definitions do not have, or a value
// of the wrong type, fails the request with 400 and is kept as an error.
// It can be stopped and started again on the same port, and made to fail
// as collectors do (fault): answer an HTTP error status, or take the request
// and never answer.
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
// eslint-disable-next-line @typescript-eslint/no-require-imports
const root = require('otlp-proto-definitions/build/src/generated/root.js');

export interface ProtoType {
  fromObject(o: object): object;
  toObject(m: object, opts: object): Record<string, unknown>;
  decode(b: Uint8Array): object;
}
export const Request = root.opentelemetry.proto.collector.trace.v1.ExportTraceServiceRequest as ProtoType;

/** A receiver's TLS: its key and certificate, PEM; with clientCa, clients
 * must show a certificate that CA signed. */
export interface ServerTls {
  key: Buffer;
  cert: Buffer;
  clientCa?: Buffer;
}

export type AttrValue = string | number | boolean | AttrValue[];

export interface ReceivedSpan {
  traceId: string;
  spanId: string;
  parentSpanId: string;
  name: string;
  kind: number;
  startNs: bigint;
  endNs: bigint;
  attributes: Record<string, AttrValue>;
  events: { name: string; timeNs: bigint; attributes: Record<string, AttrValue> }[];
  status: { code: number; message: string };
  resource: Record<string, AttrValue>;
}

export const TO_OBJECT = { longs: String, bytes: String, enums: Number, defaults: false, arrays: true };
const ID_FIELDS = new Set(['traceId', 'spanId', 'parentSpanId']);

/** OTLP/JSON as protobuf's JSON mapping reads it: ids are hex in OTLP/JSON
 * and base64 in protobuf JSON. */
function fromOtlpJson(v: unknown, key = ''): unknown {
  if (Array.isArray(v)) return v.map((x) => fromOtlpJson(x));
  if (v && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, fromOtlpJson(x, k)]));
  if (ID_FIELDS.has(key) && typeof v === 'string') {
    if (v !== '' && !/^[0-9a-f]+$/.test(v)) throw new Error(`${key} ${v} is not lower-case hex`);
    return Buffer.from(v, 'hex').toString('base64');
  }
  return v;
}

/** Where sent and what the definitions kept of it differ: a field they do
 * not have (dropped), or a value of another type (changed on the way). */
function differences(sent: unknown, kept: unknown, at = ''): string[] {
  if (Array.isArray(sent)) {
    if (!Array.isArray(kept) || kept.length !== sent.length) return sent.length ? [at] : [];
    return sent.flatMap((x, i) => differences(x, kept[i], `${at}[${i}]`));
  }
  if (sent && typeof sent === 'object') {
    const k = (kept ?? {}) as Record<string, unknown>;
    return Object.entries(sent).flatMap(([key, x]) => {
      const empty = x === null || x === '' || x === 0 || x === '0' || x === false || (Array.isArray(x) && x.length === 0);
      if (!(key in k)) return empty ? [] : [`${at}.${key}`];
      return differences(x, k[key], `${at}.${key}`);
    });
  }
  // scalars: int64 travels as a number or a string in OTLP/JSON
  return String(sent) === String(kept) ? [] : [`${at} (${JSON.stringify(sent)} read as ${JSON.stringify(kept)})`];
}

function attrValue(v: Record<string, unknown>): AttrValue {
  if ('stringValue' in v) return v.stringValue as string;
  if ('intValue' in v) return Number(v.intValue);
  if ('doubleValue' in v) return Number(v.doubleValue);
  if ('boolValue' in v) return v.boolValue as boolean;
  if ('arrayValue' in v) return ((v.arrayValue as { values?: Record<string, unknown>[] }).values ?? []).map(attrValue);
  return '';
}

function attrs(list: unknown): Record<string, AttrValue> {
  return Object.fromEntries(((list ?? []) as { key: string; value: Record<string, unknown> }[]).map((a) => [a.key, attrValue(a.value ?? {})]));
}

const hex = (b64: unknown) => Buffer.from((b64 as string) ?? '', 'base64').toString('hex');

/** How the receiver misbehaves: an HTTP status for every request (with a
 * Retry-After header, if given), or 'hang': read the request, never answer. */
export type ReceiverFault = { status: number; retryAfter?: string } | 'hang';

export class OtlpReceiver {
  readonly spans: ReceivedSpan[] = [];
  /** undefined: answers as a healthy collector does */
  fault: ReceiverFault | undefined;
  readonly errors: string[] = [];
  /** the content-type of every request received */
  readonly contentTypes = new Set<string>();
  requests = 0;
  private server: http.Server | undefined;
  port = 0;

  /** tls: serve https with this key and certificate (and, given a CA,
   * require a client certificate it signed) */
  constructor(readonly tls?: ServerTls) {}

  /** Listens on 127.0.0.1 (the same port again after a stop). */
  async start(): Promise<this> {
    const handle = (req: http.IncomingMessage, res: http.ServerResponse) => this.handle(req, res);
    const t = this.tls;
    const server = t ? https.createServer({ key: t.key, cert: t.cert, ca: t.clientCa, requestCert: !!t.clientCa }, handle) : http.createServer(handle);
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.port, '127.0.0.1', () => resolve());
    });
    this.port = (server.address() as AddressInfo).port;
    this.server = server;
    return this;
  }

  get endpoint(): string {
    return `${this.tls ? 'https' : 'http'}://127.0.0.1:${this.port}`;
  }

  /** Stops listening and drops open connections: the collector is down. */
  async stop(): Promise<void> {
    const s = this.server;
    this.server = undefined;
    if (!s) return;
    s.closeAllConnections();
    await new Promise<void>((r) => s.close(() => r()));
  }

  private handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    const chunks: Buffer[] = [];
    // a sender that gives up (its timeout) resets the connection: its
    // request is not received, as with any collector
    req.on('error', () => {});
    res.on('error', () => {});
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      this.requests++;
      const fault = this.fault;
      if (fault === 'hang') return;
      if (fault) {
        res.writeHead(fault.status, { 'content-type': 'text/plain', ...(fault.retryAfter ? { 'retry-after': fault.retryAfter } : {}) });
        res.end(`fault: ${fault.status}`);
        return;
      }
      try {
        if (req.method !== 'POST' || req.url !== '/v1/traces') throw new Error(`${req.method} ${req.url}: not POST /v1/traces`);
        const body = Buffer.concat(chunks);
        const type = req.headers['content-type'] ?? '';
        this.contentTypes.add(type);
        let message: object;
        if (type.startsWith('application/json')) {
          const sent = fromOtlpJson(JSON.parse(body.toString('utf8'))) as object;
          message = Request.fromObject(sent);
          const wrong = differences(sent, Request.toObject(message, TO_OBJECT));
          if (wrong.length) throw new Error(`not an ExportTraceServiceRequest as the OTLP definitions have it: ${wrong.slice(0, 5).join(', ')}`);
        } else if (type.startsWith('application/x-protobuf')) {
          message = Request.decode(body);
        } else {
          throw new Error(`content-type ${type}: not OTLP`);
        }
        this.collect(Request.toObject(message, TO_OBJECT));
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end('{}');
      } catch (err) {
        this.errors.push((err as Error).message);
        res.writeHead(400, { 'content-type': 'text/plain' });
        res.end((err as Error).message);
      }
    });
  }

  /** Keeps the spans of a request (as its definitions' toObject gives it). */
  protected collect(req: Record<string, unknown>): void {
    for (const rs of (req.resourceSpans ?? []) as Record<string, unknown>[]) {
      const resource = attrs((rs.resource as Record<string, unknown> | undefined)?.attributes);
      for (const ss of (rs.scopeSpans ?? []) as Record<string, unknown>[]) {
        for (const s of (ss.spans ?? []) as Record<string, unknown>[]) {
          const status = (s.status ?? {}) as { code?: number; message?: string };
          this.spans.push({
            traceId: hex(s.traceId),
            spanId: hex(s.spanId),
            parentSpanId: hex(s.parentSpanId),
            name: s.name as string,
            kind: s.kind as number,
            startNs: BigInt((s.startTimeUnixNano as string) ?? '0'),
            endNs: BigInt((s.endTimeUnixNano as string) ?? '0'),
            attributes: attrs(s.attributes),
            events: ((s.events ?? []) as Record<string, unknown>[]).map((e) => ({
              name: e.name as string,
              timeNs: BigInt((e.timeUnixNano as string) ?? '0'),
              attributes: attrs(e.attributes),
            })),
            status: { code: status.code ?? 0, message: status.message ?? '' },
            resource,
          });
        }
      }
    }
  }

  /** Waits until pred holds for the spans received, or throws. */
  async waitFor(pred: (spans: ReceivedSpan[]) => boolean, timeoutMs = 20_000): Promise<ReceivedSpan[]> {
    const deadline = Date.now() + timeoutMs;
    while (!pred(this.spans)) {
      if (Date.now() > deadline) throw new Error(`the receiver has ${this.spans.length} spans, not what was awaited; errors: ${this.errors.join('; ')}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    return this.spans;
  }
}
