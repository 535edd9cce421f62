// SPDX-License-Identifier: Apache-2.0
// OpenTelemetry spans from the TCP lifecycle object's events: one span per
// connection, exported over OTLP/HTTP by the OpenTelemetry Node SDK,
// configured by the standard OTEL_* variables and by --otlp-endpoint and
// --trace-sample-ratio. Without an endpoint nothing here runs at all.
//
// Span and trace ids follow from the kernel's connection ids (ids.ts): a
// sidecar's outbound connection and the application's accepted one are
// children of the inbound connection they serve. A span is built only if its
// trace is sampled, as a finished record (conn-span.ts), and goes through a
// bounded queue (export-queue.ts) whose drops are counted. The SDK provides
// the resource (service name, OTEL_RESOURCE_ATTRIBUTES, the detectors) and
// the exporter.
import os from 'node:os';
import { ROOT_CONTEXT, TraceFlags, trace } from '@opentelemetry/api';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { AlwaysOnSampler, type ReadableSpan } from '@opentelemetry/sdk-trace';
import { OTLPTraceExporter as JsonExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { OTLPTraceExporter as ProtobufExporter } from '@opentelemetry/exporter-trace-otlp-proto';
import { NodeSDK } from '@opentelemetry/sdk-node';
import { Counter, Gauge, type Registry } from 'prom-client';
import { UsageError } from '../errors';
import type { Logger } from '../log';
import { KernelClock } from './clock';
import type { ConnEvent } from './conn-event';
import { ExportQueue, queueSettingsFromEnv, type DropReason } from './export-queue';
import { ConnSpan, type SpanOrigin } from './conn-span';
import { ConnectionIds } from './ids';

export interface TracingSpec {
  /** --otlp-endpoint: the collector's base URL, as OTEL_EXPORTER_OTLP_ENDPOINT */
  endpoint?: string;
  /** --trace-sample-ratio */
  sampleRatio?: number;
}

/** OTLP over HTTP: protobuf (the specification's default) or JSON. */
export type OtlpProtocol = 'http/protobuf' | 'http/json';

export interface TracingConfig {
  /** the traces URL; undefined: the exporter reads it from OTEL_* */
  url?: string;
  protocol: OtlpProtocol;
  ratio: number;
  /** where spans go, for the log */
  target: string;
}

function envRatio(env: NodeJS.ProcessEnv): number {
  const sampler = (env.OTEL_TRACES_SAMPLER ?? 'parentbased_always_on').trim().toLowerCase();
  if (sampler.endsWith('always_off')) return 0;
  if (!sampler.endsWith('traceidratio')) return 1;
  const arg = Number(env.OTEL_TRACES_SAMPLER_ARG ?? '1');
  if (!(arg >= 0 && arg <= 1)) throw new UsageError(`OTEL_TRACES_SAMPLER_ARG ${env.OTEL_TRACES_SAMPLER_ARG}: give a ratio from 0 to 1`);
  return arg;
}

function envProtocol(env: NodeJS.ProcessEnv): OtlpProtocol {
  const [name, value] = env.OTEL_EXPORTER_OTLP_TRACES_PROTOCOL
    ? ['OTEL_EXPORTER_OTLP_TRACES_PROTOCOL', env.OTEL_EXPORTER_OTLP_TRACES_PROTOCOL]
    : ['OTEL_EXPORTER_OTLP_PROTOCOL', env.OTEL_EXPORTER_OTLP_PROTOCOL ?? 'http/protobuf'];
  const p = value.trim().toLowerCase();
  if (p === 'http/protobuf' || p === 'http/json') return p;
  throw new UsageError(`${name} ${value}: not supported; give http/protobuf (the default) or http/json`);
}

/** Whether spans are wanted, and how; undefined: no endpoint, no span work. */
export function resolveTracing(spec: TracingSpec, env: NodeJS.ProcessEnv = process.env): TracingConfig | undefined {
  if (spec.sampleRatio !== undefined && !(spec.sampleRatio >= 0 && spec.sampleRatio <= 1)) {
    throw new UsageError(`--trace-sample-ratio ${spec.sampleRatio}: give a ratio from 0 to 1`);
  }
  let url: string | undefined;
  let target: string;
  if (spec.endpoint !== undefined) {
    let u: URL;
    try {
      u = new URL(spec.endpoint);
    } catch {
      throw new UsageError(`--otlp-endpoint ${spec.endpoint}: not a URL; give the collector's OTLP/HTTP address, such as http://localhost:4318`);
    }
    if (u.protocol !== 'http:' && u.protocol !== 'https:') {
      throw new UsageError(`--otlp-endpoint ${spec.endpoint}: not http or https; give the collector's OTLP/HTTP address, such as http://localhost:4318`);
    }
    url = `${u.origin}${u.pathname.replace(/\/+$/, '')}/v1/traces`;
    target = url;
  } else if (env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT || env.OTEL_EXPORTER_OTLP_ENDPOINT) {
    if (env.OTEL_SDK_DISABLED?.trim().toLowerCase() === 'true' || env.OTEL_TRACES_EXPORTER?.trim().toLowerCase() === 'none') return undefined;
    target = env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT ?? `${env.OTEL_EXPORTER_OTLP_ENDPOINT} (OTEL_EXPORTER_OTLP_ENDPOINT)`;
  } else {
    return undefined;
  }
  return { url, protocol: envProtocol(env), ratio: spec.sampleRatio ?? envRatio(env), target };
}

export class ConnectionTracing {
  private readonly ids = new ConnectionIds();
  private readonly ratio: number;
  private readonly sdk: NodeSDK;
  private readonly queue: ExportQueue;
  private readonly origin: SpanOrigin;
  private readonly dropped: Counter<string>;
  private readonly log: Logger;
  private warned = false;

  constructor(config: TracingConfig, version: string, registry: Registry, log: Logger) {
    const dropped = (this.dropped = new Counter({
      name: 'bpfnet_spans_dropped_total',
      help: 'Spans not delivered to the collector: queue_full (the export queue, OTEL_BSP_MAX_QUEUE_SIZE, was full: the collector is down or slow), export_failed (the collector refused them or did not answer in time), shutdown (still queued when the exporter stopped), error (could not be built; the log says why).',
      labelNames: ['reason'],
      registers: [registry],
    }));
    for (const reason of ['queue_full', 'export_failed', 'shutdown', 'error']) dropped.inc({ reason }, 0);
    this.log = log;
    const exported = new Counter({ name: 'bpfnet_spans_exported_total', help: 'Spans the collector accepted.', registers: [registry] });
    const Exporter = config.protocol === 'http/json' ? JsonExporter : ProtobufExporter;
    const exporter = new Exporter(config.url ? { url: config.url } : {});
    this.queue = new ExportQueue(exporter, {
      ...queueSettingsFromEnv(),
      onDrop: (reason: DropReason, n: number) => dropped.inc({ reason }, n),
      onExported: (n) => exported.inc(n),
    });
    const queue = this.queue;
    new Gauge({
      name: 'bpfnet_spans_queued',
      help: 'Spans waiting in the export queue.',
      registers: [registry],
      collect() {
        this.set(queue.queued);
      },
    });

    this.ratio = config.ratio;
    this.sdk = new NodeSDK({
      serviceName: process.env.OTEL_SERVICE_NAME ? undefined : 'bpfnet-exporter',
      resource: resourceFromAttributes({ 'service.version': version, 'host.name': os.hostname() }),
      spanProcessors: [this.queue],
      sampler: new AlwaysOnSampler(),
      instrumentations: [],
      metricReaders: [],
      logRecordProcessors: [],
      textMapPropagator: null,
    });
    this.sdk.start();
    this.origin = { ...ConnectionTracing.sdkOrigin(version), clock: new KernelClock() };
    log.info('sending connection spans', { to: config.target, protocol: config.protocol, sampleRatio: config.ratio });
  }

  /** The resource and scope the SDK gives its spans, read off a span that
   * is never ended (so never exported). */
  private static sdkOrigin(version: string): Omit<SpanOrigin, 'clock'> {
    const parent = trace.setSpanContext(ROOT_CONTEXT, { traceId: '1'.repeat(32), spanId: '1'.repeat(16), traceFlags: TraceFlags.SAMPLED, isRemote: true });
    const span = trace.getTracer('bpfnet-exporter', version).startSpan('resource', {}, parent) as Partial<ReadableSpan>;
    if (!span.resource || !span.instrumentationScope) throw new Error('the OpenTelemetry SDK did not start a recording span');
    return { resource: span.resource, instrumentationScope: span.instrumentationScope };
  }

  /** A connection's span, if its trace is sampled. Never throws: this runs
   * inside the ring buffer's drain; a span it cannot build is counted. */
  onConnEvent(e: ConnEvent): void {
    try {
      this.span(e);
    } catch (err) {
      this.dropped.inc({ reason: 'error' });
      if (!this.warned) this.log.warn('cannot build a span (counted in bpfnet_spans_dropped_total{reason="error"})', { err: (err as Error).message });
      this.warned = true;
    }
  }

  private span(e: ConnEvent): void {
    const root = e.rootId || e.parentId || e.id;
    if (!this.ids.sampled(root, this.ratio)) return;
    const parent = e.parentId ? this.ids.spanId(e.parentId) : '';
    this.queue.onEnd(new ConnSpan(e, this.ids.traceId(root), this.ids.spanId(e.id), parent, this.origin));
  }

  /** Exports what is queued (within a few seconds) and stops. */
  async shutdown(): Promise<void> {
    await this.queue.shutdown();
    await this.sdk.shutdown().catch(() => {});
  }
}
