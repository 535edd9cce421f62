// SPDX-License-Identifier: Apache-2.0
// Workload attribution against the real kernel and a real OCI runtime
// (runc): pods laid out as kubelet lays them out (test/helpers/pods.ts),
// started after the exporter, talking to each other, to a host standing in
// for another node and to a process of the node in a systemd-style cgroup;
// every TCP metric counted exactly by namespace, pod, container, cgroup and
// peer, and compared with each pod's own kernel counters.
import assert from 'node:assert/strict';
import path from 'node:path';
import { runClient, startServer, type Server } from '../helpers/agent';
import { TestCgroup } from '../helpers/cgroup';
import { RunningExporter } from '../helpers/exporter';
import { trafficAgent, TestNode, type Pod } from '../helpers/pods';
import type { Metrics } from '../helpers/prom-text';
import { requireRoot } from '../helpers/privileges';
import { cgroup2Mount } from '../../src/system';

const OWNER_EMPTY = { namespace: '', pod: '', container: '', cgroup: '' };

/** The workload labels of a pod's container. */
const inPod = (namespace: string, pod: string, container: string) => ({ namespace, pod, container, cgroup: '' });

/** Every sample of name, as "labels => value" lines for the labels given,
 * zero samples left out: what a test compares whole. */
function table(m: Metrics, name: string, labels: readonly string[]): string[] {
  return m
    .find(name)
    .filter((s) => s.value !== 0)
    .map((s) => `${labels.map((l) => `${l}=${s.labels[l]}`).join(' ')} => ${s.value}`)
    .sort();
}

describe('workload attribution', function () {
  let node: TestNode;
  let exporter: RunningExporter;

  before(async function () {
    requireRoot();
    this.timeout(60_000);
    node = TestNode.create('attr');
    exporter = await new RunningExporter([
      '--probes',
      'connect,accept,close',
      '--cgroup',
      node.cgroupRoot,
      '--kubelet-containers-dir',
      node.containersDir,
    ]).ready();
  });

  after(async function () {
    await exporter?.stop();
    await node?.destroy();
  });

  it('counts connects, accepts, closes and bytes exactly by pod, container, cgroup and peer', async function () {
    this.timeout(180_000);
    const rel = (dir: string) => path.relative(cgroup2Mount()!, dir);
    // pods made after the exporter started, of both drivers
    const web = await node.startPod({
      namespace: 'shop',
      name: 'web',
      qos: 'burstable',
      driver: 'systemd',
      containers: [{ name: 'app', argv: trafficAgent({ role: 'serve', host: '0.0.0.0', port: 8080, down: 3000 }) }],
    });
    await web.containers[0]!.agent.waitFor('listening');

    // a process of the node, in a systemd service's cgroup, connects until
    // the exporter knows the web pod's address (its first connects may
    // come before): how many it took is counted too
    const slice = new TestCgroup('', node.cgroupRoot, 'system.slice');
    const service = new TestCgroup('', slice, 'shop-probe.service');
    let attempts = 0;
    for (;;) {
      const r = await runClient(node.netns, { host: web.address, port: 8080, connections: [{ up: 500 }] }, service);
      assert.deepEqual(
        r.results.map((x) => [x.ok, x.received]),
        [[true, 3000]],
      );
      attempts++;
      const m = await exporter.scrape();
      if (m.sum('bpfnet_tcp_connects_total', { cgroup: rel(service.path), peer_pod: 'web' }) === 1) break;
      assert.ok(attempts < 50, 'the web pod never became a known peer');
      await new Promise((r) => setTimeout(r, 200));
    }

    const remote = node.addRemoteHost();
    const far = await startServer(remote.netns, { host: remote.address, port: 0, down: 500 });
    const checkout = await node.startPod({
      namespace: 'shop',
      name: 'checkout',
      qos: 'besteffort',
      driver: 'cgroupfs',
      containers: [
        { name: 'app', argv: trafficAgent({ role: 'connect', host: web.address, port: 8080, connections: Array(3).fill({ up: 1000 }) }) },
        // nothing listens on port 9: refused
        { name: 'retry', argv: trafficAgent({ role: 'connect', host: web.address, port: 9, connections: Array(2).fill({ up: 1 }) }) },
      ],
    });
    const batch = await node.startPod({
      namespace: 'jobs',
      name: 'batch',
      qos: 'guaranteed',
      driver: 'systemd',
      runtime: 'crio',
      containers: [{ name: 'job', argv: trafficAgent({ role: 'connect', host: remote.address, port: far.port, connections: Array(2).fill({ up: 700 }) }) }],
    });
    for (const c of [...checkout.containers, ...batch.containers]) await c.agent.waitFor('done');
    await waitServed(web, 3 + attempts);
    await waitServed(far, 2);

    const m = await exporter.scrape();
    const host = { ...OWNER_EMPTY, cgroup: rel(service.path) };
    const labelled = (o: Record<string, string>) => ['namespace', 'pod', 'container', 'cgroup'].map((l) => `${l}=${o[l]}`).join(' ');
    const connects = ['result', 'namespace', 'pod', 'container', 'cgroup', 'peer_port', 'peer_namespace', 'peer_pod'];
    assert.deepEqual(
      table(m, 'bpfnet_tcp_connects_total', connects),
      [
        `result=established ${labelled(inPod('shop', 'checkout', 'app'))} peer_port=8080 peer_namespace=shop peer_pod=web => 3`,
        `result=refused ${labelled(inPod('shop', 'checkout', 'retry'))} peer_port=9 peer_namespace=shop peer_pod=web => 2`,
        `result=established ${labelled(inPod('jobs', 'batch', 'job'))} peer_port=${far.port} peer_namespace= peer_pod= => 2`,
        `result=established ${labelled(host)} peer_port=8080 peer_namespace=shop peer_pod=web => 1`,
        ...(attempts > 1 ? [`result=established ${labelled(host)} peer_port=8080 peer_namespace= peer_pod= => ${attempts - 1}`] : []),
      ].sort(),
    );
    assert.deepEqual(table(m, 'bpfnet_tcp_accepts_total', ['port', 'comm', 'namespace', 'pod', 'container', 'cgroup']), [
      `port=8080 comm=test-server ${labelled(inPod('shop', 'web', 'app'))} => ${3 + attempts}`,
    ]);
    const byOwner = (name: string) => table(m, name, ['role', 'namespace', 'pod', 'container', 'cgroup']);
    assert.deepEqual(
      byOwner('bpfnet_tcp_closes_total'),
      [
        `role=server ${labelled(inPod('shop', 'web', 'app'))} => ${3 + attempts}`,
        `role=client ${labelled(inPod('shop', 'checkout', 'app'))} => 3`,
        `role=client ${labelled(inPod('jobs', 'batch', 'job'))} => 2`,
        `role=client ${labelled(host)} => ${attempts}`,
      ].sort(),
    );
    assert.deepEqual(
      byOwner('bpfnet_tcp_sent_bytes_total'),
      [
        `role=server ${labelled(inPod('shop', 'web', 'app'))} => ${3000 * (3 + attempts)}`,
        `role=client ${labelled(inPod('shop', 'checkout', 'app'))} => 3000`,
        `role=client ${labelled(inPod('jobs', 'batch', 'job'))} => 1400`,
        `role=client ${labelled(host)} => ${500 * attempts}`,
      ].sort(),
    );
    assert.deepEqual(
      byOwner('bpfnet_tcp_received_bytes_total'),
      [
        `role=server ${labelled(inPod('shop', 'web', 'app'))} => ${3000 + 500 * attempts}`,
        `role=client ${labelled(inPod('shop', 'checkout', 'app'))} => 9000`,
        `role=client ${labelled(inPod('jobs', 'batch', 'job'))} => 1000`,
        `role=client ${labelled(host)} => ${3000 * attempts}`,
      ].sort(),
    );
    // the histograms by owner too: each pod's connections, and no other
    assert.equal(m.value('bpfnet_tcp_connection_duration_seconds_count', { family: 'ipv4', role: 'server', ...inPod('shop', 'web', 'app') }), 3 + attempts);
    assert.equal(
      m.value('bpfnet_tcp_connect_duration_seconds_count', {
        family: 'ipv4',
        ...inPod('shop', 'checkout', 'app'),
        peer_port: '8080',
        peer_namespace: 'shop',
        peer_pod: 'web',
      }),
      3,
    );
    assert.equal(m.value('bpfnet_tcp_accept_queue_duration_seconds_count', { family: 'ipv4', ...inPod('shop', 'web', 'app') }), 3 + attempts);

    // as each pod's own network stack counted them
    const snmp = (p: Pod) => p.netns.tcpCounters();
    assert.equal(snmp(checkout).ActiveOpens, 5);
    assert.equal(snmp(checkout).AttemptFails, 2);
    assert.equal(snmp(batch).ActiveOpens, 2);
    assert.equal(snmp(web).PassiveOpens, 3 + attempts);
    assert.equal(m.value('bpfnet_series_folded_total', { metric: 'bpfnet_tcp_connects_total' }), 0);
    await far.stop();
    for (const p of [checkout, batch, web]) await p.delete();
    await service.destroy();
    await slice.destroy();
  });
});

/** Waits until a server process reported n connections served. */
async function waitServed(server: { all(event: string): unknown[] } | Pod | Server, n: number): Promise<void> {
  const agent = 'containers' in server ? server.containers[0]!.agent : server;
  while (agent.all('served').length < n) await new Promise((r) => setTimeout(r, 20));
}
