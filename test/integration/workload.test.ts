// SPDX-License-Identifier: Apache-2.0
// Workload attribution against the real kernel and a real OCI runtime
// (runc): pods laid out as kubelet lays them out (test/helpers/pods.ts),
// started after the exporter, talking to each other, to a host standing in
// for another node and to a process of the node in a systemd-style cgroup;
// every TCP metric counted exactly by namespace, pod, container, cgroup and
// peer, and compared with each pod's own kernel counters.
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { AgentProcess, runClient, startServer, type Server } from '../helpers/agent';
import { TestCgroup } from '../helpers/cgroup';
import { RunningExporter } from '../helpers/exporter';
import { createNetns } from '../helpers/netns';
import { OtlpReceiver } from '../helpers/otlp-receiver';
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

describe('workload attribution over time', function () {
  let node: TestNode;
  let receiver: OtlpReceiver;

  before(async function () {
    requireRoot();
    node = TestNode.create('attr-time');
    receiver = await new OtlpReceiver().start();
  });

  after(async function () {
    await receiver?.stop();
    await node?.destroy();
  });

  it('keeps counting a pod deleted and made again under its name, its old entries retired from the kernel, and names it in spans', async function () {
    this.timeout(180_000);
    const exporter = await new RunningExporter(
      ['--probes', 'connect,accept,close', '--cgroup', node.cgroupRoot, '--kubelet-containers-dir', node.containersDir, '--otlp-endpoint', receiver.endpoint],
      { _BPFNET_RETIRE_AFTER_MS: '2000', OTEL_BSP_SCHEDULE_DELAY: '100' },
    ).ready();
    try {
      const db = (n: number) =>
        node.startPod({
          namespace: 'data',
          name: 'db-0',
          qos: 'guaranteed',
          driver: 'cgroupfs',
          containers: [{ name: 'postgres', argv: trafficAgent({ role: 'serve', host: '0.0.0.0', port: 5432, down: 100 * n }) }],
        });
      const dbLabels = { family: 'ipv4', port: '5432', comm: 'test-server', ...inPod('data', 'db-0', 'postgres') };
      // the node's client, in a systemd service's cgroup
      const slice = new TestCgroup('', node.cgroupRoot, 'system.slice');
      const service = new TestCgroup('', slice, 'psql.service');
      const first = await db(1);
      await first.containers[0]!.agent.waitFor('listening');
      const client = await runClient(node.netns, { host: first.address, port: 5432, connections: Array(2).fill({ up: 10 }) }, service);
      assert.deepEqual(
        client.results.map((r) => r.received),
        [100, 100],
      );
      await waitServed(first, 2);
      assert.equal((await exporter.scrape()).value('bpfnet_tcp_accepts_total', dbLabels), 2);
      const oldId = first.containers[0]!.cgroupId();
      await first.delete();

      // the old cgroup's entries leave the kernel's maps (2 s after it is
      // noticed gone, here); its counts stay under the pod's labels
      for (let i = 0; ; i++) {
        const m = await exporter.scrape();
        assert.equal(m.value('bpfnet_tcp_accepts_total', dbLabels), 2);
        if (!cgroupsInMap(exporter, 'tcp_accepts').includes(BigInt(oldId))) break;
        assert.ok(i < 100, 'the deleted pod never left the kernel map');
        await new Promise((r) => setTimeout(r, 200));
      }
      const second = await db(2);
      await second.containers[0]!.agent.waitFor('listening');
      await runClient(node.netns, { host: second.address, port: 5432, connections: Array(3).fill({ up: 10 }) }, service);
      await waitServed(second, 3);
      const m = await exporter.scrape();
      assert.equal(m.value('bpfnet_tcp_accepts_total', dbLabels), 5);
      assert.equal(m.value('bpfnet_tcp_closes_total', { family: 'ipv4', role: 'server', ...inPod('data', 'db-0', 'postgres') }), 5);
      assert.equal(m.value('bpfnet_tcp_sent_bytes_total', { family: 'ipv4', role: 'server', ...inPod('data', 'db-0', 'postgres') }), 2 * 100 + 3 * 200);
      assert.ok(cgroupsInMap(exporter, 'tcp_accepts').includes(BigInt(second.containers[0]!.cgroupId())));

      // each accepted connection's span names the pod and container
      const spans = await receiver.waitFor((all) => all.filter((s) => s.attributes['k8s.pod.name'] === 'db-0').length >= 5);
      const server = spans.filter((s) => s.attributes['k8s.pod.name'] === 'db-0');
      assert.equal(server.length, 5);
      for (const span of server) {
        assert.equal(span.name, 'tcp accept');
        assert.equal(span.attributes['k8s.namespace.name'], 'data');
        assert.equal(span.attributes['k8s.container.name'], 'postgres');
      }
      assert.deepEqual(new Set(server.map((s) => s.attributes['container.id'])), new Set([first.containers[0]!.id, second.containers[0]!.id]));
      assert.deepEqual(new Set(server.map((s) => s.attributes['k8s.pod.uid'])), new Set([first.uid, second.uid]));
      // the node's client, outside pods: its cgroup path
      const clients = spans.filter((s) => s.name === 'tcp connect' && s.attributes['network.peer.port'] === 5432);
      assert.equal(clients.length, 5);
      for (const span of clients) {
        assert.equal(span.attributes['bpfnet.cgroup'], path.relative(cgroup2Mount()!, service.path));
        assert.equal(span.attributes['k8s.pod.name'], undefined);
      }
      await second.delete();
      await service.destroy();
      await slice.destroy();
    } catch (err) {
      fs.writeFileSync('/tmp/exp-stderr.log', exporter.stderr);
      throw err;
    } finally {
      await exporter.stop();
    }
  });

  it('folds label sets beyond --max-series into "other", exactly, and counts them', async function () {
    this.timeout(300_000);
    const PODS = 300;
    const PORTS = 10;
    const MAX = 1000;
    // pods as cgroups with kubelet's links, no runtime: one process moves
    // through them, connecting to each port from each
    const ns = createNetns('fold');
    const servers: Server[] = [];
    for (let i = 0; i < PORTS; i++) servers.push(await startServer(ns, { host: '127.0.0.1', port: 0, down: 1 }));
    const cgroups = Array.from({ length: PODS }, (_, i) => fakePod(node, 'load', `client-${i}`));
    const exporter = await new RunningExporter([
      '--probes',
      'connect',
      '--cgroup',
      node.cgroupRoot,
      '--kubelet-containers-dir',
      node.containersDir,
      '--max-series',
      String(MAX),
    ]).ready();
    try {
      const hopper = new TestCgroup('hopper', node.cgroupRoot);
      // (nsenter, not ip netns exec, which mounts a /sys without the cgroups)
      const spec = {
        role: 'connect',
        host: '127.0.0.1',
        port: 0,
        connections: [{ up: 1 }],
        hop: { cgroups: cgroups.map((c) => c.dir), ports: servers.map((s) => s.port) },
      };
      const argv = hopper.wrap('nsenter', [
        `--net=${ns.path}`,
        process.execPath,
        path.join(__dirname, '..', 'helpers', 'traffic-agent.js'),
        JSON.stringify(spec),
      ]);
      const agent = new AgentProcess(spawn(argv[0], argv[1], { stdio: ['pipe', 'pipe', 'pipe'] }));
      await agent.waitFor('done', 240_000);
      assert.equal(
        agent.all('hopped').reduce((n, h) => n + (h.ok as number), 0),
        PODS * PORTS,
      );
      const m = await exporter.scrape();
      const series = m.find('bpfnet_tcp_connects_total');
      const own = series.filter((s) => s.labels.pod !== 'other');
      const other = series.filter((s) => s.labels.pod === 'other');
      // the kernel's map keeps MAX keys (pod and port); the others count
      // there under "other"; each key makes 4 series (one per result), of
      // which MAX are shown and the rest folded
      assert.equal(m.value('bpfnet_tcp_attribution_overflow_total', { map: 'tcp_connects' }), PODS * PORTS - MAX);
      assert.equal(own.length, MAX);
      assert.equal(m.value('bpfnet_series_folded_total', { metric: 'bpfnet_tcp_connects_total' }), 4 * MAX - MAX);
      assert.equal(m.value('bpfnet_series_folded_total', { metric: 'bpfnet_tcp_connect_duration_seconds' }), 0);
      assert.equal(m.sum('bpfnet_tcp_connects_total', { result: 'established' }), PODS * PORTS);
      assert.equal(m.sum('bpfnet_tcp_connect_duration_seconds_count'), PODS * PORTS);
      for (const s of other)
        for (const l of ['namespace', 'pod', 'container', 'cgroup', 'peer_port', 'peer_namespace', 'peer_pod']) assert.equal(s.labels[l], 'other');
      for (const s of own) assert.equal(s.labels.namespace, 'load', JSON.stringify(s.labels));
      assert.equal(ns.tcpCounters().ActiveOpens, PODS * PORTS);
      // the same series on the next scrape: nothing moves between them
      const again = (await exporter.scrape()).find('bpfnet_tcp_connects_total').filter((s) => s.labels.pod !== 'other');
      assert.deepEqual(new Set(again.map((s) => JSON.stringify(s.labels))), new Set(own.map((s) => JSON.stringify(s.labels))));
      await hopper.destroy();
    } finally {
      await exporter.stop();
      for (const s of servers) await s.stop();
      for (const c of cgroups) c.remove();
      await ns.destroy();
    }
  });
});

/** A pod as kubelet lays it out, without a runtime: its container's cgroup
 * (cgroupfs driver, BestEffort) and log link. */
function fakePod(node: TestNode, namespace: string, name: string): { dir: string; remove: () => void } {
  const uid = crypto.randomUUID();
  const id = crypto.randomBytes(32).toString('hex');
  const pod = path.join(node.cgroupRoot, 'kubepods', 'besteffort', `pod${uid}`);
  const dir = path.join(pod, id);
  fs.mkdirSync(dir, { recursive: true });
  const link = path.join(node.containersDir, `${name}_${namespace}_app-${id}.log`);
  fs.symlinkSync(`/var/log/pods/${namespace}_${name}_${uid}/app/0.log`, link);
  return {
    dir,
    remove: () => {
      fs.rmSync(link, { force: true });
      for (const d of [dir, pod, path.dirname(pod), path.dirname(path.dirname(pod))]) {
        try {
          fs.rmdirSync(d);
        } catch {
          // gone already, or another pod's too
        }
      }
    },
  };
}

/** The cgroup ids among the keys of an exporter's map (bpftool), found by
 * name among the maps the exporter's process holds. */
function cgroupsInMap(exporter: RunningExporter, name: string): bigint[] {
  const fds = `/proc/${exporter.child.pid}/fdinfo`;
  const ids = fs
    .readdirSync(fds)
    .map((fd) => {
      try {
        return /^map_id:\s*(\d+)$/m.exec(fs.readFileSync(path.join(fds, fd), 'utf8'))?.[1];
      } catch {
        return undefined; // closed meanwhile (a scrape's socket)
      }
    })
    .filter((id): id is string => id !== undefined);
  const id = ids.find((i) => (JSON.parse(execFileSync('bpftool', ['-j', 'map', 'show', 'id', i], { encoding: 'utf8' })) as { name: string }).name === name);
  assert.ok(id, `the exporter holds no map ${name}`);
  const dump = JSON.parse(execFileSync('bpftool', ['-j', 'map', 'dump', 'id', id], { encoding: 'utf8' })) as { key: string[] }[];
  return dump.map((e) => Buffer.from(e.key.slice(0, 8).map((b) => parseInt(b, 16))).readBigUInt64LE(0));
}

/** Waits until a server process reported n connections served. */
async function waitServed(server: { all(event: string): unknown[] } | Pod | Server, n: number): Promise<void> {
  const agent = 'containers' in server ? server.containers[0]!.agent : server;
  while (agent.all('served').length < n) await new Promise((r) => setTimeout(r, 20));
}
