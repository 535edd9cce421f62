// SPDX-License-Identifier: Apache-2.0
// A span processor that batches ended spans to an exporter through a bounded
// queue, one export in flight at a time, and counts every span it could not
// deliver: a collector that is down or slow costs at most the queue's
// memory, never blocks anything else, and loses nothing silently. Sizes and
// delays follow the OTEL_BSP_* variables, as the SDK's batch processor does.
import type { Context } from '@opentelemetry/api';
import { ExportResultCode, type ExportResult } from '@opentelemetry/core';
import type { ReadableSpan, Span, SpanExporter, SpanProcessor } from '@opentelemetry/sdk-trace';

export type DropReason = 'queue_full' | 'export_failed' | 'shutdown';

export interface ExportQueueOptions {
  maxQueueSize: number;
  maxExportBatchSize: number;
  scheduledDelayMillis: number;
  onDrop: (reason: DropReason, spans: number) => void;
  onExported: (spans: number) => void;
}

function envInt(name: string, fallback: number): number {
  const v = Number(process.env[name]);
  return Number.isInteger(v) && v > 0 ? v : fallback;
}

/** The OTEL_BSP_* settings, with the specification's defaults. */
export function queueSettingsFromEnv(): Pick<ExportQueueOptions, 'maxQueueSize' | 'maxExportBatchSize' | 'scheduledDelayMillis'> {
  const maxQueueSize = envInt('OTEL_BSP_MAX_QUEUE_SIZE', 2048);
  return {
    maxQueueSize,
    maxExportBatchSize: Math.min(envInt('OTEL_BSP_MAX_EXPORT_BATCH_SIZE', 512), maxQueueSize),
    scheduledDelayMillis: envInt('OTEL_BSP_SCHEDULE_DELAY', 5000),
  };
}

export class ExportQueue implements SpanProcessor {
  private queue: ReadableSpan[] = [];
  private inFlight: Promise<void> | undefined;
  private readonly timer: NodeJS.Timeout;
  private shut = false;

  constructor(
    private readonly exporter: SpanExporter,
    private readonly opts: ExportQueueOptions,
  ) {
    this.timer = setInterval(() => this.exportNext(), opts.scheduledDelayMillis);
    this.timer.unref();
  }

  get queued(): number {
    return this.queue.length;
  }

  onStart(_span: Span, _parent: Context): void {}

  onEnd(span: ReadableSpan): void {
    if (this.shut) return this.opts.onDrop('shutdown', 1);
    if (this.queue.length >= this.opts.maxQueueSize) return this.opts.onDrop('queue_full', 1);
    this.queue.push(span);
    if (this.queue.length >= this.opts.maxExportBatchSize) this.exportNext();
  }

  /** Starts exporting the next batch unless one is in flight. */
  private exportNext(): void {
    if (this.inFlight || this.queue.length === 0) return;
    const batch = this.queue.splice(0, this.opts.maxExportBatchSize);
    this.inFlight = new Promise<void>((resolve) => {
      let done = false;
      const finish = (r: ExportResult) => {
        if (done) return;
        done = true;
        if (r.code === ExportResultCode.SUCCESS) this.opts.onExported(batch.length);
        else this.opts.onDrop('export_failed', batch.length);
        resolve();
      };
      try {
        this.exporter.export(batch, finish);
      } catch {
        finish({ code: ExportResultCode.FAILED });
      }
    }).then(() => {
      this.inFlight = undefined;
      // a full batch waiting: do not wait for the timer
      if (this.queue.length >= this.opts.maxExportBatchSize) this.exportNext();
    });
  }

  async forceFlush(): Promise<void> {
    while (this.inFlight || this.queue.length) {
      if (!this.inFlight) this.exportNext();
      await this.inFlight;
    }
  }

  /** Exports what is queued, within deadlineMs; what is left is dropped. */
  async shutdown(deadlineMs = 5000): Promise<void> {
    if (this.shut) return;
    this.shut = true;
    clearInterval(this.timer);
    let timeout: NodeJS.Timeout | undefined;
    await Promise.race([this.forceFlush(), new Promise<void>((r) => (timeout = setTimeout(r, deadlineMs)))]);
    clearTimeout(timeout);
    if (this.queue.length) this.opts.onDrop('shutdown', this.queue.splice(0).length);
    await this.exporter.shutdown().catch(() => {});
  }
}
