// SPDX-License-Identifier: Apache-2.0
// The close probe against the real kernel: exact payload bytes each way (the
// SYN and FIN the kernel's byte counters include are not payload), lifetimes,
// retransmissions compared with the kernel's own count, and tcplife as a peer.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { runClient, startClient, startServer } from '../helpers/agent';
import { RunningExporter, sleep } from '../helpers/exporter';
import { createNetns, type Netns } from '../helpers/netns';
import { requireRoot } from '../helpers/privileges';
import type { Metrics } from '../helpers/prom-text';

// (client sends, server answers): sizes on both sides of bucket bounds
const SIZES: [number, number][] = [
  [0, 0],
  [1, 1],
  [1000, 1024],
  [1024, 1025],
  [1025, 65536],
  [65536, 1048576],
  [1048576, 0],
];
const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);

const closed = (m: Metrics, family: string, role: string) => m.value('bpfnet_tcp_closes_total', { family, role });

describe('close probe', function () {
  let ns: Netns;
  let exporter: RunningExporter;

  before(async function () {
    requireRoot();
    ns = createNetns('close');
    exporter = await new RunningExporter(['--probes', 'close', '--netns', ns.path]).ready();
  });

  after(async function () {
    await exporter?.stop();
    await ns?.destroy();
  });

  it('counts exact payload bytes each way, per connection and in total, for IPv4 and IPv6', async function () {
    for (const [family, host] of [
      ['ipv4', '127.0.0.1'],
      ['ipv6', '::1'],
    ] as const) {
      for (const [up, down] of SIZES) {
        const server = await startServer(ns, { host, port: 0, down });
        const { results } = await runClient(ns, { host, port: server.port, connections: [{ up }] });
        assert.deepEqual(
          results.map((r) => [r.ok, r.received]),
          [[true, down]],
        );
        await server.stop();
      }
      const n = SIZES.length;
      const m = await exporter.settle((x) => closed(x, family, 'client') === n && closed(x, family, 'server') === n);
      const ups = sum(SIZES.map((s) => s[0]));
      const downs = sum(SIZES.map((s) => s[1]));
      const v = (name: string, role: string) => m.value(name, { family, role });
      assert.deepEqual([closed(m, family, 'client'), closed(m, family, 'server')], [n, n]);
      assert.deepEqual(
        [
          v('bpfnet_tcp_sent_bytes_total', 'client'),
          v('bpfnet_tcp_received_bytes_total', 'client'),
          v('bpfnet_tcp_sent_bytes_total', 'server'),
          v('bpfnet_tcp_received_bytes_total', 'server'),
        ],
        [ups, downs, downs, ups],
      );
      // one connection per size: the first bucket whose bound is >= the size
      const b = m.buckets('bpfnet_tcp_connection_sent_bytes', { family, role: 'client' });
      assert.deepEqual(
        ['1', '2', '512', '1024', '2048', '32768', '65536', '524288', '1048576', '+Inf'].map((le) => b.get(le)),
        [2, 2, 2, 4, 5, 5, 6, 6, 7, 7],
      );
      assert.equal(m.value('bpfnet_tcp_connection_sent_bytes_sum', { family, role: 'server' }), downs);
      assert.equal(m.value('bpfnet_tcp_srtt_seconds_count', { family }), 2 * n);
    }
    // every one was an active open and a passive open of this namespace
    const kernel = ns.tcpCounters();
    assert.equal(kernel.ActiveOpens, 2 * SIZES.length);
    assert.equal(kernel.PassiveOpens, 2 * SIZES.length);
  });

  it('counts a connection ended by a reset, with the bytes that reached the peer', async function () {
    const before = await exporter.scrape();
    const resetsBefore = ns.tcpCounters().EstabResets;
    const server = await startServer(ns, { host: '127.0.0.1', port: 0, down: 1 });
    await runClient(ns, { host: '127.0.0.1', port: server.port, connections: [{ up: 5000, ending: 'reset' }] });
    const m = await exporter.settle((x) => closed(x, 'ipv4', 'server') > closed(before, 'ipv4', 'server'));
    await server.stop();
    const delta = (name: string, role: string) => m.value(name, { family: 'ipv4', role }) - before.value(name, { family: 'ipv4', role });
    assert.deepEqual(
      ['client', 'server'].map((r) => [
        delta('bpfnet_tcp_closes_total', r),
        delta('bpfnet_tcp_sent_bytes_total', r),
        delta('bpfnet_tcp_received_bytes_total', r),
      ]),
      [
        [1, 5000, 0],
        [1, 0, 5000],
      ],
    );
    // both ends left ESTABLISHED straight for CLOSE: the sender of the RST and its receiver
    assert.equal(ns.tcpCounters().EstabResets - resetsBefore, 2);
  });

  it('measures lifetime from established to closed, in the bucket of a 700 ms connection', async function () {
    const server = await startServer(ns, { host: '127.0.0.1', port: 0, down: 10 });
    const before = await exporter.scrape();
    await runClient(ns, { host: '127.0.0.1', port: server.port, connections: [{ up: 10, holdMs: 700 }] });
    const m = await exporter.settle((x) => closed(x, 'ipv4', 'server') > closed(before, 'ipv4', 'server'));
    await server.stop();
    for (const role of ['client', 'server']) {
      const b0 = before.buckets('bpfnet_tcp_connection_duration_seconds', { family: 'ipv4', role });
      const b1 = m.buckets('bpfnet_tcp_connection_duration_seconds', { family: 'ipv4', role });
      const added = (le: string) => b1.get(le)! - b0.get(le)!;
      assert.deepEqual([added('0.536870912'), added('1.073741824')], [0, 1], role);
    }
  });

  it('counts retransmitted segments exactly as the kernel does', async function () {
    this.timeout(30_000);
    const server = await startServer(ns, { host: '127.0.0.1', port: 0, down: 10 });
    const before = await exporter.scrape();
    const kernelBefore = ns.tcpCounters().RetransSegs;
    // data segments to the server vanish until one of them was a
    // retransmission (the second drop): the client probes and retransmits
    const client = startClient(ns, { host: '127.0.0.1', port: server.port, connections: [{ up: 20000, waitForGo: true }] });
    await client.waitFor('connected');
    ns.nft(`table ip lose {
      chain input { type filter hook input priority 0; tcp dport ${server.port} ip length > 200 counter drop; }
    }`);
    client.go();
    await ns.waitForPackets('ip lose', 2);
    ns.nft('delete table ip lose');
    await client.waitFor('done');
    const m = await exporter.settle((x) => closed(x, 'ipv4', 'server') > closed(before, 'ipv4', 'server'));
    await server.stop();
    const ours = m.sum('bpfnet_tcp_retransmits_total') - before.sum('bpfnet_tcp_retransmits_total');
    const kernel = ns.tcpCounters().RetransSegs - kernelBefore;
    assert.ok(kernel > 0, 'the test lost no segment');
    assert.equal(ours, kernel);
  });

  it('agrees with tcplife on connections and their sizes', async function () {
    this.timeout(30_000);
    const server = await startServer(ns, { host: '127.0.0.1', port: 0, down: 300 * 1024 });
    // line-buffered: tcplife's stdout is a pipe here
    const tcplife = spawn('stdbuf', ['-oL', 'tcplife', '-4'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    tcplife.stdout.on('data', (d) => (out += d));
    try {
      for (let i = 0; i < 300 && !out.includes('PID'); i++) await sleep(100); // its header: attached
      assert.ok(out.includes('PID'), 'tcplife did not start');
      const before = await exporter.scrape();
      await runClient(ns, { host: '127.0.0.1', port: server.port, connections: Array(3).fill({ up: 100 * 1024 }) });
      const m = await exporter.settle((x) => closed(x, 'ipv4', 'server') - closed(before, 'ipv4', 'server') === 3);
      // PID COMM LADDR LPORT RADDR RPORT TX_KB RX_KB MS, from a perf buffer
      const ours = () =>
        out
          .split('\n')
          .map((l) => l.trim().split(/\s+/))
          .filter((f) => f.length >= 9 && (f[3] === String(server.port) || f[5] === String(server.port)));
      for (let i = 0; i < 100 && ours().length < 6; i++) await sleep(100);
      const lines = ours();
      const serverSide = lines.filter((f) => f[3] === String(server.port)).map((f) => [Number(f[6]), Number(f[7])]);
      const clientSide = lines.filter((f) => f[5] === String(server.port)).map((f) => [Number(f[6]), Number(f[7])]);
      // tcplife shows KiB with two decimals, of counters that include SYN and FIN
      assert.deepEqual(serverSide, Array(3).fill([300, 100]));
      assert.deepEqual(clientSide, Array(3).fill([100, 300]));
      const delta = (name: string, role: string) => m.value(name, { family: 'ipv4', role }) - before.value(name, { family: 'ipv4', role });
      // ours are exact
      assert.equal(delta('bpfnet_tcp_sent_bytes_total', 'server'), 3 * 300 * 1024);
      assert.equal(delta('bpfnet_tcp_received_bytes_total', 'server'), 3 * 100 * 1024);
      assert.equal(delta('bpfnet_tcp_closes_total', 'client'), clientSide.length);
    } finally {
      tcplife.kill('SIGINT');
      await server.stop();
    }
  });
});
