// SPDX-License-Identifier: Apache-2.0
// A span processor that batches ended spans to an exporter through a bounded
// queue, a few exports in flight at a time, and counts every span it could
// not deliver: a collector that is down or slow costs at most the queue's
// memory, never blocks anything else, and loses nothing silently. Sizes and
// delays follow the OTEL_BSP_* variables, as the SDK's batch processor does;
// the defaults differ from the specification's where a burst of connections
// needs it (see QUEUE_DEFAULTS).
import type { Context } from '@opentelemetry/api';
import { ExportResultCode, type ExportResult } from '@opentelemetry/core';
import type { ReadableSpan, Span, SpanExporter, SpanProcessor } from '@opentelemetry/sdk-trace';
import { UsageError } from '../errors';
import { envInteger, type Env } from './otel-env';

export type DropReason = 'queue_full' | 'export_failed' | 'shutdown';

export interface QueueSettings {
  /** OTEL_BSP_MAX_QUEUE_SIZE: spans waiting, not counting those being sent */
  maxQueueSize: number;
  /** OTEL_BSP_MAX_EXPORT_BATCH_SIZE: spans per export */
  maxExportBatchSize: number;
  /** OTEL_BSP_SCHEDULE_DELAY: how long a batch that is not full waits, ms */
  scheduledDelayMillis: number;
  /** OTEL_BSP_EXPORT_TIMEOUT: when an export that has not answered counts as failed, ms; 0: never */
  exportTimeoutMillis: number;
  /** exports in flight at once */
  maxConcurrentExports: number;
}

/** The ring buffer hands over up to 4096 events in one turn of the event
 * loop (src/libbpf/ringbuf.ts), and no export can finish within a turn: the
 * queue must hold at least that, or a burst loses spans however fast the
 * collector is. The specification's 2,048 lost 36 % of a 2,000-connection
 * burst on loopback (4,000 spans). 8,192 spans take about 11 MiB (a queued
 * span is about 1.3 KiB); a full queue, plus four batches in flight, is the
 * most spans ever held. Four exports in flight keep a collector that is far
 * away (its round trip, not its throughput, the limit) busy. */
export const QUEUE_DEFAULTS: QueueSettings = {
  maxQueueSize: 8192,
  maxExportBatchSize: 512,
  scheduledDelayMillis: 5000,
  exportTimeoutMillis: 30_000,
  maxConcurrentExports: 4,
};

/** The OTEL_BSP_* settings over QUEUE_DEFAULTS; throws UsageError on a bad value. */
export function queueSettingsFromEnv(env: Env): QueueSettings {
  const d = QUEUE_DEFAULTS;
  const queue = envInteger(env, 'OTEL_BSP_MAX_QUEUE_SIZE', 1, `a number of spans, such as ${d.maxQueueSize} (the default)`);
  const batch = envInteger(env, 'OTEL_BSP_MAX_EXPORT_BATCH_SIZE', 1, `a number of spans, such as ${d.maxExportBatchSize} (the default)`);
  const maxQueueSize = queue ?? d.maxQueueSize;
  if (batch !== undefined && batch > maxQueueSize) {
    const q = queue === undefined ? `the queue's ${maxQueueSize} spans (OTEL_BSP_MAX_QUEUE_SIZE)` : `OTEL_BSP_MAX_QUEUE_SIZE ${queue}`;
    throw new UsageError(`OTEL_BSP_MAX_EXPORT_BATCH_SIZE ${batch}: more than ${q}; give a batch size up to the queue size`);
  }
  return {
    maxQueueSize,
    // a smaller queue than the default batch: batches of the whole queue
    maxExportBatchSize: batch ?? Math.min(d.maxExportBatchSize, maxQueueSize),
    scheduledDelayMillis:
      envInteger(env, 'OTEL_BSP_SCHEDULE_DELAY', 0, `milliseconds, such as ${d.scheduledDelayMillis} (the default)`) ?? d.scheduledDelayMillis,
    exportTimeoutMillis:
      envInteger(env, 'OTEL_BSP_EXPORT_TIMEOUT', 0, `milliseconds, such as ${d.exportTimeoutMillis} (the default; 0: no limit)`) ?? d.exportTimeoutMillis,
    maxConcurrentExports: d.maxConcurrentExports,
  };
}

export interface ExportQueueOptions extends QueueSettings {
  onDrop: (reason: DropReason, spans: number) => void;
  onExported: (spans: number) => void;
  /** an export failed (its spans are also counted by onDrop) */
  onFailure?: (error: unknown, spans: number) => void;
}

/** What ended an export: the exporter's error, or our own give-up. */
export class ExportTimeoutError extends Error {
  constructor(readonly ms: number) {
    super(`no result within ${ms} ms (OTEL_BSP_EXPORT_TIMEOUT)`);
    this.name = 'ExportTimeoutError';
  }
}

interface Flight {
  spans: number;
}

export class ExportQueue implements SpanProcessor {
  private queue: ReadableSpan[] = [];
  private readonly inFlight = new Set<Flight>();
  /** a batch that is not full is due: the schedule delay has passed, or a flush */
  private due = false;
  private flushing = 0;
  private timer: NodeJS.Timeout | undefined;
  private idle: (() => void)[] = [];
  private shut = false;
  private closed: Promise<number> | undefined;

  constructor(
    private readonly exporter: SpanExporter,
    private readonly opts: ExportQueueOptions,
  ) {}

  /** Spans waiting or being sent: neither exported nor dropped yet. */
  get queued(): number {
    let n = this.queue.length;
    for (const f of this.inFlight) n += f.spans;
    return n;
  }

  onStart(_span: Span, _parent: Context): void {}

  onEnd(span: ReadableSpan): void {
    if (this.shut) return this.opts.onDrop('shutdown', 1);
    if (this.queue.length >= this.opts.maxQueueSize) return this.opts.onDrop('queue_full', 1);
    this.queue.push(span);
    if (this.queue.length >= this.opts.maxExportBatchSize) this.pump();
    else if (this.queue.length === 1) this.schedule();
  }

  /** A batch that is not full leaves after the schedule delay. */
  private schedule(): void {
    if (this.timer || this.shut) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.due = true;
      this.pump();
    }, this.opts.scheduledDelayMillis);
    this.timer.unref();
  }

  /** Starts exports while a slot is free and a batch is ready. */
  private pump(): void {
    const { maxExportBatchSize: size, maxConcurrentExports: slots } = this.opts;
    while (this.inFlight.size < slots && this.queue.length > 0 && (this.queue.length >= size || this.due || this.flushing > 0)) {
      this.send(this.queue.splice(0, size));
    }
    if (this.queue.length === 0) this.due = false;
    else if (!this.due) this.schedule();
    if (this.queue.length === 0 && this.inFlight.size === 0) for (const r of this.idle.splice(0)) r();
  }

  private send(batch: ReadableSpan[]): void {
    const flight: Flight = { spans: batch.length };
    this.inFlight.add(flight);
    let timeout: NodeJS.Timeout | undefined;
    const settle = (r: ExportResult) => {
      // once only: a late result after our give-up (or shutdown) is not counted again
      if (!this.inFlight.delete(flight)) return;
      clearTimeout(timeout);
      if (r.code === ExportResultCode.SUCCESS) {
        this.opts.onExported(flight.spans);
      } else {
        this.opts.onDrop('export_failed', flight.spans);
        this.opts.onFailure?.(r.error, flight.spans);
      }
      this.pump();
    };
    const ms = this.opts.exportTimeoutMillis;
    if (ms > 0) {
      timeout = setTimeout(() => settle({ code: ExportResultCode.FAILED, error: new ExportTimeoutError(ms) }), ms);
      timeout.unref();
    }
    try {
      this.exporter.export(batch, settle);
    } catch (err) {
      settle({ code: ExportResultCode.FAILED, error: err as Error });
    }
  }

  private whenIdle(): Promise<void> {
    if (this.queue.length === 0 && this.inFlight.size === 0) return Promise.resolve();
    return new Promise((r) => this.idle.push(r));
  }

  /** Sends everything queued, batches that are not full too. */
  async forceFlush(): Promise<void> {
    this.flushing++;
    try {
      this.pump();
      await this.whenIdle();
    } finally {
      this.flushing--;
    }
  }

  /** Sends what is queued for at most deadlineMs, then counts what is still
   * queued or being sent as dropped (shutdown) and stops; resolves with that
   * number. An export still in flight is abandoned, not awaited: the
   * exporter's own shutdown runs on without holding this up. */
  close(deadlineMs: number): Promise<number> {
    this.closed ??= this.closeNow(deadlineMs);
    return this.closed;
  }

  private async closeNow(deadlineMs: number): Promise<number> {
    this.shut = true;
    clearTimeout(this.timer);
    this.timer = undefined;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([this.forceFlush(), new Promise<void>((r) => (timer = setTimeout(r, deadlineMs)))]);
    clearTimeout(timer);
    const left = this.queued;
    this.queue = [];
    this.inFlight.clear();
    for (const r of this.idle.splice(0)) r();
    if (left) this.opts.onDrop('shutdown', left);
    this.exporter.shutdown().catch(() => {});
    return left;
  }

  /** SpanProcessor's shutdown (the SDK's, after ours): within a few seconds. */
  async shutdown(): Promise<void> {
    await this.close(2000);
  }
}
