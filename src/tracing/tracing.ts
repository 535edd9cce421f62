// SPDX-License-Identifier: Apache-2.0
// OpenTelemetry spans from the TCP lifecycle object's events: one span per
// connection, exported over OTLP/HTTP by the OpenTelemetry Node SDK,
// configured by the standard OTEL_* variables and by --otlp-endpoint and
// --trace-sample-ratio (config.ts, checked before anything loads). Without
// an endpoint nothing here runs at all.
//
// Span and trace ids follow from the kernel's connection ids (ids.ts): a
// sidecar's outbound connection and the application's accepted one are
// children of the inbound connection they serve. A span is built only if its
// trace is sampled, as a finished record (conn-span.ts), and goes through a
// bounded queue (export-queue.ts) whose drops are counted and whose failures
// are logged, rate-limited (export-failures.ts). The SDK provides the
// resource (service name, OTEL_RESOURCE_ATTRIBUTES, the detectors) and the
// exporter (collector.ts); its own diagnostics go to our log (sdk-diag.ts).
import os from 'node:os';
import { ROOT_CONTEXT, TraceFlags, trace } from '@opentelemetry/api';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { AlwaysOnSampler, type ReadableSpan } from '@opentelemetry/sdk-trace';
import { NodeSDK } from '@opentelemetry/sdk-node';
import { Counter, Gauge, type Registry } from 'prom-client';
import type { Logger } from '../log';
import { KernelClock } from './clock';
import { Collector } from './collector';
import type { ConnEvent } from './conn-event';
import { ConnSpan, type SpanOrigin } from './conn-span';
import type { TracingConfig } from './config';
import { classifyFailure, FailureLog } from './export-failures';
import { ExportQueue, type DropReason } from './export-queue';
import { ConnectionIds } from './ids';
import { routeSdkDiagnostics } from './sdk-diag';

export { resolveTracing, type OtlpProtocol, type TracingConfig, type TracingSpec } from './config';

/** The longest a stop waits for spans to leave, whatever the collector does:
 * queued spans get this long, then the SDK's own shutdown gets what is left
 * of SHUTDOWN_MS. What is still queued or being sent then is dropped. */
const FLUSH_MS = 1500;
const SHUTDOWN_MS = 2000;

export class ConnectionTracing {
  private readonly ids = new ConnectionIds();
  private readonly ratio: number;
  private readonly sdk: NodeSDK;
  private readonly queue: ExportQueue;
  private readonly origin: SpanOrigin;
  private readonly dropped: Counter<string>;
  private readonly log: Logger;
  private readonly collector: Collector;
  private readonly failures: FailureLog;
  private warned = false;

  constructor(config: TracingConfig, version: string, registry: Registry, log: Logger) {
    const dropped = (this.dropped = new Counter({
      name: 'bpfnet_spans_dropped_total',
      help: 'Spans not delivered to the collector: queue_full (the export queue, OTEL_BSP_MAX_QUEUE_SIZE, was full: the collector is down or slow), export_failed (the collector refused them or did not answer in time), shutdown (still queued or being sent when the exporter stopped), error (could not be built; the log says why).',
      labelNames: ['reason'],
      registers: [registry],
    }));
    for (const reason of ['queue_full', 'export_failed', 'shutdown', 'error']) dropped.inc({ reason }, 0);
    this.log = log;
    const exported = new Counter({ name: 'bpfnet_spans_exported_total', help: 'Spans the collector accepted.', registers: [registry] });
    this.collector = new Collector(config);
    const failures = (this.failures = new FailureLog(log, config.target, config.failureLogIntervalMs));
    const collector = this.collector;
    this.queue = new ExportQueue(this.collector.exporter, {
      ...config.queue,
      onDrop: (reason: DropReason, n: number) => dropped.inc({ reason }, n),
      onExported: (n) => {
        exported.inc(n);
        failures.succeeded();
      },
      onFailure: (err, n) => failures.failed(classifyFailure(err, collector.lastAnswer()), n),
    });
    const queue = this.queue;
    new Gauge({
      name: 'bpfnet_spans_queued',
      help: 'Spans waiting in the export queue or being sent: neither exported nor dropped yet.',
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
    // after the SDK's constructor, which may have set its own console logger
    // (OTEL_LOG_LEVEL), before its start, which may have something to say
    routeSdkDiagnostics(log.child('otel-sdk'), log.enabled('debug'), config.failureLogIntervalMs);
    this.sdk.start();
    this.origin = { ...ConnectionTracing.sdkOrigin(version), clock: new KernelClock() };
    const q = config.queue;
    log.info('sending connection spans', {
      to: config.target,
      protocol: config.protocol,
      sampleRatio: config.ratio,
      queue: q.maxQueueSize,
      batch: q.maxExportBatchSize,
      inFlight: q.maxConcurrentExports,
    });
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

  /** Exports what is queued and stops, within SHUTDOWN_MS whatever the
   * collector does (down, refusing, or taking requests and never answering):
   * what is still queued or being sent then is dropped (shutdown), and said. */
  async shutdown(): Promise<void> {
    const deadline = Date.now() + SHUTDOWN_MS;
    const left = await this.queue.close(FLUSH_MS);
    this.collector.stop();
    this.failures.close();
    if (left) this.log.warn('spans not delivered at shutdown (counted in bpfnet_spans_dropped_total{reason="shutdown"})', { spans: left });
    let timer: NodeJS.Timeout | undefined;
    const sdkDone = this.sdk.shutdown().catch(() => {});
    await Promise.race([sdkDone, new Promise<void>((r) => (timer = setTimeout(r, Math.max(0, deadline - Date.now()))))]);
    clearTimeout(timer);
  }
}
