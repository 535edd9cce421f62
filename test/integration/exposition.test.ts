// SPDX-License-Identifier: Apache-2.0
// /metrics as scrapers read it: promtool finds nothing to say about it, the
// OpenMetrics form is served when asked for and leaves the classic form
// intact, and the other endpoints answer as documented.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import http from 'node:http';
import { runClient, spawnEchoAgent, startEchoServer, startServer, streamResults } from '../helpers/agent';
import { TestCgroup } from '../helpers/cgroup';
import { httpGet, RunningExporter } from '../helpers/exporter';
import { createNetns, type Netns } from '../helpers/netns';
import { OtlpReceiver } from '../helpers/otlp-receiver';
import { requireRoot } from '../helpers/privileges';

const OPENMETRICS = 'application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1';

describe('exposition', function () {
  let ns: Netns;
  let cg: TestCgroup;
  let exporter: RunningExporter;
  let url: string;
  let receiver: OtlpReceiver;

  before(async function () {
    requireRoot();
    ns = createNetns('expo');
    cg = new TestCgroup('expo');
    receiver = await new OtlpReceiver().start();
    exporter = await new RunningExporter([
      '--probes',
      'connect,accept,close,netstack',
      '--netns',
      ns.path,
      '--redirect',
      '--redirect-cgroup',
      cg.path,
      '--otlp-endpoint',
      receiver.endpoint,
      '--sidecar-comm',
      'sidecar-proxy',
    ]).ready();
    url = await exporter.url;
    const server = await startServer(ns, { host: '::1', port: 0, down: 4096 });
    await runClient(ns, { host: '::1', port: server.port, connections: Array(3).fill({ up: 1000 }) });
    await runClient(ns, { host: '127.0.0.1', port: 1, connections: [{ up: 1 }] });
    await server.stop();
    const echo = await startEchoServer(ns, { role: 'echo', host: '127.0.0.1', port: 0 }, cg);
    await streamResults(spawnEchoAgent(ns, { role: 'stream', host: '127.0.0.1', port: echo.port, connections: 2, bytes: 10_000 }, cg));
    await echo.stop();
    await exporter.settle((m) => m.sum('bpfnet_tcp_closes_total') === 10);
  });

  after(async function () {
    await exporter?.stop();
    await ns?.destroy();
    await cg?.destroy();
    await receiver?.stop();
  });

  it('passes promtool check metrics with no findings', async function () {
    const { body, contentType } = await exporter.metricsText();
    assert.equal(contentType, 'text/plain; version=0.0.4; charset=utf-8');
    const out = execFileSync('promtool', ['check', 'metrics'], { input: body, encoding: 'utf8', stdio: ['pipe', 'pipe', 'pipe'] });
    assert.equal(out, '');
    for (const name of [
      'bpfnet_tcp_connects_total',
      'bpfnet_tcp_connect_duration_seconds_bucket',
      'bpfnet_tcp_accepts_total',
      'bpfnet_tcp_accept_handshake_duration_seconds_bucket',
      'bpfnet_tcp_accept_queue_duration_seconds_bucket',
      'bpfnet_tcp_closes_total',
      'bpfnet_tcp_connection_duration_seconds_bucket',
      'bpfnet_tcp_sent_bytes_total',
      'bpfnet_tcp_received_bytes_total',
      'bpfnet_tcp_connection_sent_bytes_bucket',
      'bpfnet_tcp_connection_received_bytes_bucket',
      'bpfnet_tcp_retransmits_total',
      'bpfnet_tcp_srtt_seconds_bucket',
      'bpfnet_probe_up',
      'bpfnet_bpf_program_run_seconds_total',
      'bpfnet_bpf_program_runs_total',
      'bpfnet_build_info',
      'bpfnet_redirect_enabled',
      'bpfnet_redirect_sockets',
      'bpfnet_redirect_connections_total',
      'bpfnet_redirect_messages_total',
      'bpfnet_redirect_bytes_total',
      'bpfnet_redirect_fallbacks_total',
      'bpfnet_redirect_map_full_total',
      'bpfnet_netstack_latency_seconds_bucket',
      'bpfnet_skb_drops_total',
      'bpfnet_tcp_resets_total',
      'bpfnet_tcp_retransmitted_segments_total',
      'bpfnet_netstack_map_full_total',
      'bpfnet_sidecar_forward_seconds_bucket',
      'bpfnet_sidecar_upstream_connect_seconds_bucket',
      'bpfnet_sidecar_reused_connections_total',
      'bpfnet_events_lost_total',
      'bpfnet_spans_exported_total',
      'bpfnet_spans_dropped_total',
      'bpfnet_spans_queued',
      // prom-client's standard process and Node.js metrics, unprefixed
      'process_cpu_seconds_total',
      'process_resident_memory_bytes',
      'process_open_fds',
      'process_start_time_seconds',
      'nodejs_eventloop_lag_seconds',
      'nodejs_heap_size_used_bytes',
    ]) {
      assert.match(body, new RegExp(`^${name}[{ ]`, 'm'), name);
    }
  });

  it('serves OpenMetrics to a scraper that prefers it, and the classic form unchanged afterwards', async function () {
    const om = await exporter.metricsText({ Accept: OPENMETRICS });
    assert.equal(om.contentType, 'application/openmetrics-text; version=1.0.0; charset=utf-8');
    assert.ok(om.body.endsWith('# EOF\n'));
    assert.match(om.body, /^# TYPE bpfnet_tcp_connects counter$/m);
    assert.match(
      om.body,
      /^bpfnet_tcp_connects_total\{family="ipv6",result="established",namespace="",pod="",container="",cgroup="[^"]+",peer_port="\d+",peer_namespace="",peer_pod=""\} 3$/m,
    );
    assert.match(
      om.body,
      /^bpfnet_tcp_connects_total\{family="ipv4",result="refused",namespace="",pod="",container="",cgroup="[^"]+",peer_port="\d+",peer_namespace="",peer_pod=""\} 1$/m,
    );
    const classic = await exporter.metricsText();
    assert.match(classic.body, /^# TYPE bpfnet_tcp_connects_total counter$/m);
    assert.match(
      classic.body,
      /^bpfnet_tcp_connects_total\{family="ipv6",result="established",namespace="",pod="",container="",cgroup="[^"]+",peer_port="\d+",peer_namespace="",peer_pod=""\} 3$/m,
    );
    assert.equal(execFileSync('promtool', ['check', 'metrics'], { input: classic.body, encoding: 'utf8' }), '');
  });

  it('answers /healthz, /readyz, / and nothing else', async function () {
    assert.deepEqual([(await httpGet(`${url}/healthz`)).status, (await httpGet(`${url}/healthz`)).body], [200, 'ok\n']);
    assert.deepEqual([(await httpGet(`${url}/readyz`)).status, (await httpGet(`${url}/readyz`)).body], [200, 'ready\n']);
    assert.match((await httpGet(`${url}/`)).body, /href="\/metrics"/);
    assert.equal((await httpGet(`${url}/nope`)).status, 404);
    const post = await new Promise<number>((resolve, reject) => {
      const req = http.request(`${url}/metrics`, { method: 'POST' }, (res) => {
        res.resume();
        resolve(res.statusCode!);
      });
      req.on('error', reject);
      req.end();
    });
    assert.equal(post, 405);
  });
});
