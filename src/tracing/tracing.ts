// SPDX-License-Identifier: Apache-2.0
// OpenTelemetry spans from the TCP lifecycle object's events: one span per
// connection, exported over OTLP/HTTP by the OpenTelemetry Node SDK,
// configured by the standard OTEL_* variables and by --otlp-endpoint and
// --trace-sample-ratio. Without an endpoint nothing here runs at all.
//
// Span and trace ids follow from the kernel's connection ids (ids.ts): a
// sidecar's outbound connection and the application's accepted one are
// children of the inbound connection they serve. A span is built
// only if its trace is sampled, and ended spans go through a bounded queue
// (export-queue.ts) whose drops are counted.
import os from 'node:os';
import { ROOT_CONTEXT, SpanKind, SpanStatusCode, TraceFlags, trace, type Attributes, type Tracer } from '@opentelemetry/api';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { ParentBasedSampler, SamplingDecision, TraceIdRatioBasedSampler } from '@opentelemetry/sdk-trace';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { NodeSDK } from '@opentelemetry/sdk-node';
import { Counter, Gauge, type Registry } from 'prom-client';
import { UsageError } from '../errors';
import type { Logger } from '../log';
import { KernelClock } from './clock';
import type { ConnEvent } from './conn-event';
import { ExportQueue, queueSettingsFromEnv, type DropReason } from './export-queue';
import { ConnectionIds, PresetIdGenerator } from './ids';

export interface TracingSpec {
  /** --otlp-endpoint: the collector's base URL, as OTEL_EXPORTER_OTLP_ENDPOINT */
  endpoint?: string;
  /** --trace-sample-ratio */
  sampleRatio?: number;
}

export interface TracingConfig {
  /** the traces URL; undefined: the exporter reads it from OTEL_* */
  url?: string;
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
  return { url, ratio: spec.sampleRatio ?? envRatio(env), target };
}

const seconds = (ns: bigint) => Number(ns) / 1e9;

export class ConnectionTracing {
  private readonly ids = new PresetIdGenerator();
  private readonly connIds = new ConnectionIds();
  private readonly clock = new KernelClock();
  private readonly ratio: TraceIdRatioBasedSampler;
  private readonly sdk: NodeSDK;
  private readonly queue: ExportQueue;
  private readonly tracer: Tracer;
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
    const exporter = new OTLPTraceExporter(config.url ? { url: config.url } : {});
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

    this.ratio = new TraceIdRatioBasedSampler(config.ratio);
    this.sdk = new NodeSDK({
      serviceName: process.env.OTEL_SERVICE_NAME ? undefined : 'bpfnet-exporter',
      resource: resourceFromAttributes({ 'service.version': version, 'host.name': os.hostname() }),
      spanProcessors: [this.queue],
      sampler: new ParentBasedSampler({ root: this.ratio }),
      idGenerator: this.ids,
      instrumentations: [],
      metricReaders: [],
      logRecordProcessors: [],
      textMapPropagator: null,
    });
    this.sdk.start();
    this.tracer = trace.getTracer('bpfnet-exporter', version);
    log.info('sending connection spans', { to: config.target, sampleRatio: config.ratio });
  }

  private sampled(traceId: string): boolean {
    return this.ratio.shouldSample(ROOT_CONTEXT, traceId).decision === SamplingDecision.RECORD_AND_SAMPLED;
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
    const traceId = this.connIds.traceId(e.rootId || e.parentId || e.id);
    if (!this.sampled(traceId)) return;
    const attributes: Attributes = {
      'network.transport': 'tcp',
      'network.type': e.family,
      'network.local.address': e.localAddress,
      'network.local.port': e.localPort,
      'network.peer.address': e.peerAddress,
      'network.peer.port': e.peerPort,
      'process.pid': e.pid,
      'bpfnet.tcp.sent_bytes': e.sentBytes,
      'bpfnet.tcp.received_bytes': e.receivedBytes,
      'bpfnet.tcp.retransmits': e.retransmits,
    };
    if (e.comm) attributes['process.executable.name'] = e.comm;
    if (e.srttUs) attributes['bpfnet.tcp.srtt'] = e.srttUs / 1e6;
    if (e.kind === 'connect_failed') {
      attributes['error.type'] = e.result;
      attributes['bpfnet.tcp.connect.result'] = e.result;
    }
    this.ids.nextTraceId = traceId;
    this.ids.nextSpanId = this.connIds.spanId(e.id);
    const parent = e.parentId
      ? trace.setSpanContext(ROOT_CONTEXT, { traceId, spanId: this.connIds.spanId(e.parentId), traceFlags: TraceFlags.SAMPLED, isRemote: true })
      : ROOT_CONTEXT;
    const client = e.role === 'client';
    const span = this.tracer.startSpan(
      client ? 'tcp connect' : 'tcp accept',
      { kind: client ? SpanKind.CLIENT : SpanKind.SERVER, startTime: this.clock.toHrTime(e.startNs), attributes },
      parent,
    );
    if (e.establishedNs) {
      span.addEvent('tcp.established', { 'bpfnet.tcp.handshake.duration': seconds(e.establishedNs - e.startNs) }, this.clock.toHrTime(e.establishedNs));
    }
    if (e.finNs) span.addEvent('tcp.fin', { 'bpfnet.tcp.fin.from': e.finFrom }, this.clock.toHrTime(e.finNs));
    if (e.kind === 'connect_failed') span.setStatus({ code: SpanStatusCode.ERROR, message: `connect ${e.result}` });
    span.end(this.clock.toHrTime(e.endNs));
  }

  /** Exports what is queued (within a few seconds) and stops. */
  async shutdown(): Promise<void> {
    await this.queue.shutdown();
    await this.sdk.shutdown().catch(() => {});
  }
}
