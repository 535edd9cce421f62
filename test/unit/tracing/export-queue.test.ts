// SPDX-License-Identifier: Apache-2.0
// The export queue against exporters that answer, never answer or fail: a
// burst the size of a ring buffer drain fits at the defaults, a few exports
// run at once, every span is counted once, and a stop is bounded whatever
// the exporter does.
import assert from 'node:assert/strict';
import { ExportResultCode, type ExportResult } from '@opentelemetry/core';
import type { ReadableSpan, SpanExporter } from '@opentelemetry/sdk-trace';
import { ExportQueue, QUEUE_DEFAULTS, type DropReason } from '../../../src/tracing/export-queue';

class FakeExporter implements SpanExporter {
  pending: ((r: ExportResult) => void)[] = [];
  maxAtOnce = 0;
  export(_spans: ReadableSpan[], done: (r: ExportResult) => void): void {
    this.pending.push(done);
    this.maxAtOnce = Math.max(this.maxAtOnce, this.pending.length);
  }
  answer(code: ExportResultCode, error?: Error): void {
    for (const done of this.pending.splice(0)) done({ code, error });
  }
  async shutdown(): Promise<void> {
    await new Promise(() => {}); // never: must not hold up the queue's stop
  }
}

function queueWith(exporter: SpanExporter, settings = {}) {
  const counts: Record<string, number> = { exported: 0 };
  const failures: unknown[] = [];
  const q = new ExportQueue(exporter, {
    ...QUEUE_DEFAULTS,
    ...settings,
    onDrop: (reason: DropReason, n: number) => (counts[reason] = (counts[reason] ?? 0) + n),
    onExported: (n) => (counts.exported += n),
    onFailure: (err) => failures.push(err),
  });
  return { q, counts, failures };
}

const span = {} as ReadableSpan;

describe('export queue', function () {
  it('takes a 4,000-span burst in one go at the defaults, four exports at a time, and delivers all of it', async function () {
    const ex = new FakeExporter();
    const { q, counts } = queueWith(ex);
    for (let i = 0; i < 4000; i++) q.onEnd(span);
    assert.equal(ex.maxAtOnce, 4);
    assert.equal(q.queued, 4000);
    const flushed = q.forceFlush();
    while (ex.pending.length) ex.answer(ExportResultCode.SUCCESS);
    await flushed;
    assert.deepEqual(counts, { exported: 4000 });
    assert.equal(q.queued, 0);
  });

  it('counts failed exports with their error, and the spans that did not fit', function () {
    const ex = new FakeExporter();
    const { q, counts, failures } = queueWith(ex, { maxQueueSize: 10, maxExportBatchSize: 5, maxConcurrentExports: 1 });
    for (let i = 0; i < 20; i++) q.onEnd(span);
    assert.deepEqual(counts, { exported: 0, queue_full: 5 });
    ex.answer(ExportResultCode.FAILED, new Error('boom'));
    assert.deepEqual(counts, { exported: 0, queue_full: 5, export_failed: 5 });
    assert.equal((failures[0] as Error).message, 'boom');
    assert.equal(q.queued, 10);
  });

  it('stops within its deadline when the exporter never answers, counting queued and in-flight spans once', async function () {
    const ex = new FakeExporter();
    const { q, counts } = queueWith(ex, { maxExportBatchSize: 10 });
    for (let i = 0; i < 100; i++) q.onEnd(span);
    const t0 = Date.now();
    assert.equal(await q.close(200), 100);
    assert.ok(Date.now() - t0 < 1000);
    ex.answer(ExportResultCode.SUCCESS); // too late: not counted again
    q.onEnd(span);
    assert.deepEqual(counts, { exported: 0, shutdown: 101 });
  });

  it('gives up on an export with no result after OTEL_BSP_EXPORT_TIMEOUT', async function () {
    const ex = new FakeExporter();
    const { q, counts, failures } = queueWith(ex, { maxExportBatchSize: 2, exportTimeoutMillis: 20 });
    q.onEnd(span);
    q.onEnd(span);
    await new Promise((r) => setTimeout(r, 60));
    assert.deepEqual(counts, { exported: 0, export_failed: 2 });
    assert.equal((failures[0] as Error).name, 'ExportTimeoutError');
  });
});
