// SPDX-License-Identifier: Apache-2.0
// --netns, --port, --cgroup and --pid against real traffic: what they include
// is counted exactly, what they exclude not at all; and filters changed while
// the programs run take effect for the connections opened afterwards.
import assert from 'node:assert/strict';
import { Exporter } from '../../src/exporter';
import { applyFilters, resolveFilters } from '../../src/filters';
import { Logger } from '../../src/log';
import { runClient, startServer } from '../helpers/agent';
import { TestCgroup } from '../helpers/cgroup';
import { onCleanup } from '../helpers/cleanup';
import { httpGet, RunningExporter } from '../helpers/exporter';
import { createNetns, type Netns } from '../helpers/netns';
import { requireRoot } from '../helpers/privileges';
import { parseMetrics, type Metrics } from '../helpers/prom-text';

const established = (m: Metrics) => m.sum('bpfnet_tcp_connects_total', { result: 'established' });
const accepted = (m: Metrics) => m.sum('bpfnet_tcp_accepts_total');
const closedConns = (m: Metrics) => m.sum('bpfnet_tcp_closes_total');

describe('filters', function () {
  let a: Netns;
  let b: Netns;

  before(function () {
    requireRoot();
    a = createNetns('filter-a');
    b = createNetns('filter-b');
  });

  after(async function () {
    await a?.destroy();
    await b?.destroy();
  });

  it('--netns counts the connections of that namespace only', async function () {
    const exporter = await new RunningExporter(['--netns', a.path]).ready();
    for (const ns of [a, b]) {
      const server = await startServer(ns, { host: '127.0.0.1', port: 0, down: 100 });
      await runClient(ns, { host: '127.0.0.1', port: server.port, connections: Array(ns === a ? 2 : 3).fill({ up: 100 }) });
      await server.stop();
    }
    const m = await exporter.settle((x) => closedConns(x) >= 4);
    await exporter.stop();
    assert.deepEqual([established(m), accepted(m), closedConns(m)], [2, 2, 4]);
    assert.equal(m.sum('bpfnet_tcp_sent_bytes_total'), 4 * 100);
  });

  it('--port counts connections with that local or remote port only', async function () {
    const counted = await startServer(a, { host: '127.0.0.1', port: 0, down: 1 });
    const other = await startServer(a, { host: '127.0.0.1', port: 0, down: 1 });
    const exporter = await new RunningExporter(['--netns', a.path, '--port', String(counted.port)]).ready();
    await runClient(a, { host: '127.0.0.1', port: counted.port, connections: Array(2).fill({ up: 1 }) });
    await runClient(a, { host: '127.0.0.1', port: other.port, connections: Array(3).fill({ up: 1 }) });
    await runClient(a, { host: '127.0.0.1', port: 1, connections: [{ up: 1 }] }); // refused, other port
    const m = await exporter.settle((x) => closedConns(x) >= 4);
    await exporter.stop();
    assert.deepEqual([m.sum('bpfnet_tcp_connects_total'), accepted(m), closedConns(m)], [2, 2, 4]);
    assert.deepEqual(
      m.find('bpfnet_tcp_accepts_total').map((s) => s.labels.port),
      [String(counted.port)],
    );
    await counted.stop();
    await other.stop();
  });

  it('--cgroup counts sockets of processes in that cgroup (and below) only', async function () {
    const parent = new TestCgroup('filter');
    const child = new TestCgroup('child', parent);
    const server = await startServer(a, { host: '127.0.0.1', port: 0, down: 1 }, parent);
    const outsider = await startServer(a, { host: '127.0.0.1', port: 0, down: 1 });
    const exporter = await new RunningExporter(['--netns', a.path, '--cgroup', parent.path]).ready();
    // a client in a cgroup below to the server in it: both ends counted
    await runClient(a, { host: '127.0.0.1', port: server.port, connections: Array(2).fill({ up: 1 }) }, child);
    // a client outside to the server inside: only the server's end
    await runClient(a, { host: '127.0.0.1', port: server.port, connections: Array(3).fill({ up: 1 }) });
    // outside to outside: nothing
    await runClient(a, { host: '127.0.0.1', port: outsider.port, connections: Array(4).fill({ up: 1 }) });
    const m = await exporter.settle((x) => closedConns(x) >= 7);
    await exporter.stop();
    assert.deepEqual([established(m), accepted(m)], [2, 5]);
    assert.deepEqual(
      [m.value('bpfnet_tcp_closes_total', { family: 'ipv4', role: 'client' }), m.value('bpfnet_tcp_closes_total', { family: 'ipv4', role: 'server' })],
      [2, 5],
    );
    await server.stop();
    await outsider.stop();
    await child.destroy();
    await parent.destroy();
  });

  it('kinds combine: --pid and --port count what matches both', async function () {
    const s1 = await startServer(a, { host: '127.0.0.1', port: 0, down: 1 });
    const s2 = await startServer(a, { host: '127.0.0.1', port: 0, down: 1 });
    const exporter = await new RunningExporter([
      '--netns',
      a.path,
      '--probes',
      'accept',
      '--pid',
      String(s1.pid),
      '--pid',
      String(s2.pid),
      '--port',
      String(s2.port),
    ]).ready();
    await runClient(a, { host: '127.0.0.1', port: s1.port, connections: Array(2).fill({ up: 1 }) });
    await runClient(a, { host: '127.0.0.1', port: s2.port, connections: Array(3).fill({ up: 1 }) });
    const m = await exporter.scrape();
    await exporter.stop();
    assert.deepEqual(
      m.find('bpfnet_tcp_accepts_total').map((s) => [s.labels.port, s.value]),
      [[String(s2.port), 3]],
    );
    await s1.stop();
    await s2.stop();
  });

  it('filters written while the programs run apply to the connections opened after', async function () {
    const log = new Logger('error');
    const exporter = await Exporter.start(
      {
        listen: { host: '127.0.0.1', port: 0 },
        probes: ['connect'],
        filters: { pids: [], netns: [b.path], cgroups: [], ports: [] },
        enableBpfStats: false,
        acceptPortLimit: 16,
        netstackSeriesTtl: 0,
      },
      log,
    );
    onCleanup('in-process exporter', () => exporter.stop());
    const scrape = async () => parseMetrics((await httpGet(`http://127.0.0.1:${exporter.address!.port}/metrics`)).body);
    const server = await startServer(a, { host: '127.0.0.1', port: 0, down: 1 });
    const connect = (n: number) => runClient(a, { host: '127.0.0.1', port: server.port, connections: Array(n).fill({ up: 1 }) });
    const objects = exporter.componentsRunning().flatMap((c) => c.objects());

    await connect(2); // namespace a is not measured yet
    assert.equal(established(await scrape()), 0);
    for (const o of objects) applyFilters(o, resolveFilters({ pids: [], netns: [a.path], cgroups: [], ports: [] }));
    await connect(3);
    assert.equal(established(await scrape()), 3);
    for (const o of objects) applyFilters(o, resolveFilters({ pids: [], netns: [b.path], cgroups: [], ports: [server.port] }));
    await connect(4); // namespace b only again
    assert.equal(established(await scrape()), 3);
    await exporter.stop();
    await server.stop();
  });
});
