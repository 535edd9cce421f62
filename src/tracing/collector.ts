// SPDX-License-Identifier: Apache-2.0
// The OTLP exporter of the OpenTelemetry SDK. Over HTTP, with an HTTP agent
// of our own: the agent lets us see the statuses the SDK retries and then reports
// without them (429, 502, 503, 504: diagnostics_channel, for this agent's
// requests only), and stop at shutdown, abandoning requests in flight and
// failing at once the retries the SDK would still schedule, so that nothing
// it does outlives the exporter by more than a moment. Over gRPC, the SDK's
// gRPC exporter (@grpc/grpc-js): it does not retry, a failed export is
// reported with its gRPC status, and its channel closes at the SDK's
// shutdown, which the stop bounds in time (tracing.ts).
import diagnostics from 'node:diagnostics_channel';
import http from 'node:http';
import https from 'node:https';
import type { Duplex } from 'node:stream';
import type { SpanExporter } from '@opentelemetry/sdk-trace';
import { OTLPTraceExporter as GrpcExporter } from '@opentelemetry/exporter-trace-otlp-grpc';
import { OTLPTraceExporter as JsonExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { OTLPTraceExporter as ProtobufExporter } from '@opentelemetry/exporter-trace-otlp-proto';
import type { HttpAnswer } from './export-failures';
import type { TlsFiles } from './config';
import type { OtlpCompression, OtlpProtocol } from './otel-env';

export interface CollectorSettings {
  url: string;
  protocol: OtlpProtocol;
  timeoutMillis: number;
  compression: OtlpCompression;
  tls?: TlsFiles;
}

type CreateConnection = (options: object, cb: (err: Error | null, socket?: Duplex) => void) => Duplex | undefined;

class StoppedError extends Error {
  readonly code = 'ERR_SPAN_EXPORTER_STOPPED';
  constructor() {
    super('the exporter is stopping');
  }
}

/** An agent of the given kind that refuses new connections once stopped;
 * over https, with the TLS files given (OTEL_EXPORTER_OTLP_CERTIFICATE...). */
function stoppableAgent(protocol: string, stopped: () => boolean, tls: TlsFiles = {}): http.Agent {
  const agent = protocol === 'https:' ? new https.Agent({ keepAlive: true, ...tls }) : new http.Agent({ keepAlive: true });
  const create = (agent as unknown as { createConnection: CreateConnection }).createConnection.bind(agent);
  (agent as unknown as { createConnection: CreateConnection }).createConnection = (options, cb) => {
    if (!stopped()) return create(options, cb);
    // not a network error code: the SDK does not retry it
    process.nextTick(() => cb(new StoppedError()));
    return undefined;
  };
  return agent;
}

export class Collector {
  readonly exporter: SpanExporter;
  /** OTLP/HTTP's */
  private readonly agent: http.Agent | undefined;
  private stopped = false;
  private answer: HttpAnswer | undefined;
  private readonly onResponse = (m: unknown) => {
    const { request, response } = m as { request: http.ClientRequest; response: http.IncomingMessage };
    if ((request as { agent?: unknown }).agent !== this.agent) return;
    const status = response.statusCode ?? 0;
    if (status >= 200 && status < 300) return;
    const retryAfter = response.headers['retry-after'];
    this.answer = { status, statusText: response.statusMessage, retryAfter: Array.isArray(retryAfter) ? retryAfter[0] : retryAfter };
  };

  constructor(s: CollectorSettings) {
    if (s.protocol === 'grpc') {
      // headers (as metadata) and TLS files the SDK reads from OTEL_*
      // itself, checked beforehand (otel-env.ts, config.ts)
      this.exporter = new GrpcExporter({ url: s.url, timeoutMillis: s.timeoutMillis, compression: s.compression as never });
      return;
    }
    const agent = (this.agent = stoppableAgent(new URL(s.url).protocol, () => this.stopped, s.tls));
    diagnostics.subscribe('http.client.response.finish', this.onResponse);
    const Exporter = s.protocol === 'http/json' ? JsonExporter : ProtobufExporter;
    this.exporter = new Exporter({
      url: s.url,
      timeoutMillis: s.timeoutMillis,
      compression: s.compression as never,
      httpAgentOptions: async () => agent,
    });
  }

  /** The last answer that was not a success (a status the SDK keeps no record of). */
  lastAnswer(): HttpAnswer | undefined {
    return this.answer;
  }

  /** Abandons requests in flight; what the SDK tries after this fails at once. */
  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    if (!this.agent) return;
    this.agent.destroy();
    diagnostics.unsubscribe('http.client.response.finish', this.onResponse);
  }
}
