// SPDX-License-Identifier: Apache-2.0
// Span delivery when the collector misbehaves, against the real exporter and
// a receiver made to fail as collectors do: each kind of failure is logged
// once when it starts, then summed up once per interval with its reason, and
// the counts in the log add up to the spans dropped; nothing of the SDK
// reaches stderr in its own format; and a stop finishes in moments whatever
// the collector does, counting what was still queued or being sent.
import assert from 'node:assert/strict';
import { runClient, startServer } from '../helpers/agent';
import { logFields, RunningExporter, sleep, within } from '../helpers/exporter';
import { createNetns, type Netns } from '../helpers/netns';
import { OtlpReceiver, type ReceiverFault } from '../helpers/otlp-receiver';
import { requireRoot } from '../helpers/privileges';
import type { Metrics } from '../helpers/prom-text';

const INTERVAL_MS = 1000;
const KNOB = '_BPFNET_SPAN_FAILURE_LOG_INTERVAL_MS';

const spanCounts = (m: Metrics) => ({
  exported: m.value('bpfnet_spans_exported_total'),
  dropped: m.sum('bpfnet_spans_dropped_total'),
  queued: m.value('bpfnet_spans_queued'),
});

describe('span delivery to a collector that fails', function () {
  let ns: Netns;
  let receiver: OtlpReceiver;

  before(async function () {
    requireRoot();
    ns = createNetns('delivery');
    receiver = await new OtlpReceiver().start();
  });

  after(async function () {
    await receiver?.stop();
    await ns?.destroy();
  });

  afterEach(async function () {
    receiver.fault = undefined;
    await receiver.start().catch(() => {}); // after 'closed'
  });

  const FAULTS: [string, ReceiverFault | 'closed', RegExp][] = [
    ['HTTP 500', { status: 500 }, /^http: HTTP 500 Internal Server Error$/],
    ['HTTP 429 with Retry-After', { status: 429, retryAfter: '1' }, /^http: HTTP 429 Too Many Requests \(Retry-After: 1\)$/],
    ['no answer', 'hang', /^timeout: Request timed out$/],
    ['a closed port', 'closed', /^refused: connect ECONNREFUSED 127\.0\.0\.1:\d+$/],
  ];

  for (const [what, fault, reason] of FAULTS) {
    it(`logs failed exports (${what}) once, then as a summary per interval with the reason, adding up to the spans dropped`, async function () {
      if (fault === 'closed') await receiver.stop();
      else receiver.fault = fault;
      const exporter = await new RunningExporter(['--netns', ns.path, '--otlp-endpoint', receiver.endpoint], {
        OTEL_BSP_SCHEDULE_DELAY: '50',
        OTEL_EXPORTER_OTLP_TIMEOUT: '300',
        OTEL_LOG_LEVEL: 'debug', // the SDK's console logger, which must not be heard
        [KNOB]: String(INTERVAL_MS),
      }).ready();
      let dropped: number;
      let elapsed: number;
      try {
        const server = await startServer(ns, { host: '127.0.0.1', port: 0, down: 1 });
        const n = 40;
        const t0 = Date.now();
        await runClient(ns, { host: '127.0.0.1', port: server.port, connections: Array(n).fill({ up: 1, holdMs: 60 }) });
        await server.stop();
        const m = await exporter.settle((x) => spanCounts(x).dropped === 2 * n && spanCounts(x).queued === 0, 20_000);
        elapsed = Date.now() - t0;
        assert.deepEqual(spanCounts(m), { exported: 0, dropped: 2 * n, queued: 0 });
        dropped = m.value('bpfnet_spans_dropped_total', { reason: 'export_failed' });
        assert.equal(dropped, 2 * n);
      } finally {
        // the stop logs what is pending as a last summary
        assert.equal((await exporter.stop()).code, 0);
      }
      const lines = exporter.stderr.trim().split('\n');
      for (const l of lines) assert.match(l, /^ts=\S+ level=\w+ /, `not a line of ours: ${l}`);
      const failures = lines.filter((l) => / msg="span exports? failed /.test(l)).map(logFields);
      assert.ok(failures.length >= 2, `a first line and a summary:\n${failures.map((f) => JSON.stringify(f)).join('\n')}`);
      const [first, ...summaries] = failures;
      assert.match(first!.msg!, /^span export failed /);
      assert.match(`${first!.reason}: ${first!.detail}`, reason);
      for (const s of summaries) {
        assert.match(s.msg!, /^span exports failed /, 'after the first, only summaries');
        for (const r of s.reasons!.split('; '))
          assert.match(r.replace(/ \(\d+x\)$/, ''), reason.source.startsWith('^http') ? new RegExp(reason.source.replace('^http: ', '^')) : reason);
      }
      // at most one line per interval, plus the first and the last at the stop
      assert.ok(summaries.length <= Math.ceil(elapsed / INTERVAL_MS) + 2, `${summaries.length} summaries in ${elapsed} ms`);
      const logged = failures.reduce((sum, f) => sum + Number(f.spans), 0);
      assert.equal(logged, dropped, 'the log adds up to the spans dropped');
    });
  }

  for (const [what, fault, signal] of [
    ['takes requests and never answers', 'hang', 'SIGTERM'],
    ['refuses connections', 'closed', 'SIGHUP'],
  ] as const) {
    it(`stops on ${signal} within moments when the collector ${what}, counting what was queued or being sent as dropped at shutdown`, async function () {
      if (fault === 'closed') await receiver.stop();
      else receiver.fault = fault;
      // the default OTLP timeout (10 s): exports are still in flight at the stop
      const exporter = await new RunningExporter(['--netns', ns.path, '--otlp-endpoint', receiver.endpoint], {
        OTEL_BSP_SCHEDULE_DELAY: '50',
        OTEL_BSP_MAX_EXPORT_BATCH_SIZE: '20',
      }).ready();
      const n = 100;
      try {
        const server = await startServer(ns, { host: '127.0.0.1', port: 0, down: 1 });
        await runClient(ns, { host: '127.0.0.1', port: server.port, connections: Array(n).fill({ up: 1 }) });
        await server.stop();
        const m = await exporter.settle((x) => spanCounts(x).queued === 2 * n);
        assert.deepEqual(spanCounts(m), { exported: 0, dropped: 0, queued: 2 * n });
      } catch (err) {
        await exporter.stop('SIGKILL');
        throw err;
      }
      const before = await exporter.scrape();
      const connects = before.sum('bpfnet_tcp_connects_total');
      assert.equal(connects, n);
      const stopping = exporter.stop(signal);
      if (fault === 'hang') {
        // while the spans get their last moments, /metrics still serves the probes' real samples
        for (let i = 0; i < 100 && !/msg=stopping/.test(exporter.stderr); i++) await sleep(10);
        const during = await exporter.scrape();
        assert.equal(during.sum('bpfnet_tcp_connects_total'), connects);
        assert.deepEqual(
          during.find('bpfnet_probe_up').map((x) => x.value),
          [1, 1, 1],
        );
      }
      // the old stop took 9-15 s here; a deadline well short of that
      const stopped = await within(stopping, 5000);
      assert.notEqual(stopped, 'timeout', `the exporter did not stop within 5 s:\n${exporter.stderr}`);
      assert.deepEqual(stopped, { code: 0, signal: null });
      const line = exporter.stderr.split('\n').find((l) => l.includes('msg="spans not delivered at shutdown'));
      assert.ok(line, `the stop says what it dropped:\n${exporter.stderr}`);
      assert.equal(logFields(line).spans, String(2 * n));
    });
  }
});
