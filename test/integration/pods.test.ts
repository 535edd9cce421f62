// SPDX-License-Identifier: Apache-2.0
// The pods test helper against the real runtime (runc): containers in the
// cgroups kubelet gives them from their first instruction, in their pod's
// network namespace, with kubelet's log links; pods reach each other and a
// remote host; and nothing is left once they are gone.
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { startServer } from '../helpers/agent';
import { requireRoot } from '../helpers/privileges';
import { trafficAgent, TestNode, type CgroupDriver, type Container, type Pod, type Qos, type Runtime } from '../helpers/pods';
import { cgroup2Mount } from '../../src/system';

const SLEEP: string[] = ['sleep', 'infinity'];

/** The container's cgroup v2 path, as /proc/PID/cgroup shows it. */
function procCgroup(pid: number): string {
  return /^0::(.*)$/m.exec(fs.readFileSync(`/proc/${pid}/cgroup`, 'utf8'))![1]!;
}

/** The TCP sockets ss lists in the pod's netns (filtered by args), each with its cgroup's path. */
function sockets(pod: Pod, ...args: string[]): string {
  // nsenter, not ip netns exec: that one mounts a /sys without the cgroup mounts
  return execFileSync('nsenter', [`--net=${pod.netns.path}`, 'ss', '-tnH', '--cgroup', ...args], { encoding: 'utf8' });
}

/** Where kubelet and the runtime put a container, written out for each layout. */
function expectedCgroup(node: TestNode, driver: CgroupDriver, qos: Qos, runtime: Runtime, uid: string, id: string): string {
  const u = uid.replaceAll('-', '_');
  const scope = { containerd: `cri-containerd-${id}.scope`, crio: `crio-${id}.scope`, docker: `docker-${id}.scope` }[runtime];
  const layouts: Record<CgroupDriver, Record<Qos, string>> = {
    systemd: {
      guaranteed: `kubepods.slice/kubepods-pod${u}.slice/${scope}`,
      burstable: `kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod${u}.slice/${scope}`,
      besteffort: `kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod${u}.slice/${scope}`,
    },
    cgroupfs: {
      guaranteed: `kubepods/pod${uid}/${runtime === 'crio' ? 'crio-' : ''}${id}`,
      burstable: `kubepods/burstable/pod${uid}/${runtime === 'crio' ? 'crio-' : ''}${id}`,
      besteffort: `kubepods/besteffort/pod${uid}/${runtime === 'crio' ? 'crio-' : ''}${id}`,
    },
  };
  return '/' + path.relative(cgroup2Mount()!, path.join(node.cgroupRoot, layouts[driver][qos]));
}

/** The cgroup directories named name in every hierarchy, v1 ones too. */
function cgroupDirsNamed(name: string): string {
  return execFileSync('find', ['/sys/fs/cgroup', '-maxdepth', '8', '-type', 'd', '-name', name], { encoding: 'utf8' });
}

function netnsNames(): string {
  return execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' });
}

describe('pods (test helper, runc)', function () {
  let node: TestNode;

  before(function () {
    requireRoot();
    node = TestNode.create('pods');
  });

  after(async function () {
    await node?.destroy();
  });

  it("puts each container in its kubelet cgroup and its pod's netns, with kubelet's log links", async function () {
    const layouts: [CgroupDriver, Qos, Runtime][] = [
      ['systemd', 'guaranteed', 'containerd'],
      ['systemd', 'burstable', 'crio'],
      ['systemd', 'besteffort', 'docker'],
      ['cgroupfs', 'guaranteed', 'docker'],
      ['cgroupfs', 'burstable', 'containerd'],
      ['cgroupfs', 'besteffort', 'crio'],
    ];
    const pods: Pod[] = [];
    for (const [driver, qos, runtime] of layouts) {
      const containers = [{ name: 'app', argv: SLEEP }];
      if (qos === 'burstable') containers.push({ name: 'sidecar', argv: SLEEP });
      pods.push(await node.startPod({ namespace: `ns-${driver}`, name: `${qos}-${runtime}`, qos, driver, runtime, containers }));
    }
    for (const [i, pod] of pods.entries()) {
      const [driver, qos, runtime] = layouts[i]!;
      assert.match(pod.uid, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
      const netnsIno = fs.statSync(pod.netns.path).ino;
      for (const c of pod.containers) {
        assert.match(c.id, /^[0-9a-f]{64}$/);
        const expected = expectedCgroup(node, driver, qos, runtime, pod.uid, c.id);
        assert.equal(c.cgroupPath, expected);
        assert.equal(procCgroup(c.pid), expected, `${pod.spec.name}/${c.name}`);
        assert.equal(fs.statSync(`/proc/${c.pid}/ns/net`).ino, netnsIno);
        const link = path.join(node.containersDir, `${pod.spec.name}_${pod.spec.namespace}_${c.name}-${c.id}.log`);
        assert.equal(c.logLink, link);
        assert.match(fs.readlinkSync(link), new RegExp(`/pods/${pod.spec.namespace}_${pod.spec.name}_${pod.uid}/${c.name}/0\\.log$`));
        assert.ok(fs.statSync(link).isFile(), 'the log file exists');
      }
    }
    assert.equal(fs.readdirSync(node.containersDir).length, 8);
    for (const pod of pods) await pod.delete();
  });

  it("a client in one pod gets a server's exact bytes in another, each socket in its container's cgroup", async function () {
    const server = await node.startPod({
      namespace: 'shop',
      name: 'web',
      qos: 'burstable',
      driver: 'systemd',
      containers: [{ name: 'app', argv: trafficAgent({ role: 'serve', host: '0.0.0.0', port: 8080, down: 3000 }) }],
    });
    const app = server.containers[0]!;
    await app.agent.waitFor('listening');
    assert.match(sockets(server, 'state', 'listening'), new RegExp(`:8080\\s.*cgroup:${app.cgroupPath}$`, 'm'));

    const client = await node.startPod({
      namespace: 'shop',
      name: 'checkout',
      qos: 'besteffort',
      driver: 'cgroupfs',
      containers: [
        { name: 'app', argv: trafficAgent({ role: 'connect', host: server.address, port: 8080, connections: [{ up: 1000, waitForGo: true }, { up: 2000 }] }) },
      ],
    });
    const caller = client.containers[0]!;
    await caller.agent.waitFor('connected');
    // the connection's client end, held open until go
    assert.match(sockets(client, 'state', 'established'), new RegExp(`${server.address.replaceAll('.', '\\.')}:8080\\s.*cgroup:${caller.cgroupPath}$`, 'm'));
    caller.agent.go();
    await caller.agent.waitFor('done');
    assert.deepEqual(
      caller.agent.all('result').map((r) => [r.ok, r.received]),
      [
        [true, 3000],
        [true, 3000],
      ],
    );
    await caller.agent.exited;
    while (app.agent.all('served').length < 2) await new Promise((r) => setTimeout(r, 20));
    assert.deepEqual(
      app.agent.all('served').map((m) => m.received),
      [1000, 2000],
    );
    await client.delete();
    await server.delete();
  });

  it('a pod reaches a remote host through the node', async function () {
    const remote = node.addRemoteHost();
    const peer = await startServer(remote.netns, { host: remote.address, port: 0, down: 500 });
    const pod = await node.startPod({
      namespace: 'shop',
      name: 'batch',
      qos: 'guaranteed',
      driver: 'systemd',
      runtime: 'crio',
      containers: [{ name: 'job', argv: trafficAgent({ role: 'connect', host: remote.address, port: peer.port, connections: [{ up: 700 }] }) }],
    });
    const job = pod.containers[0]!;
    await job.agent.waitFor('done');
    assert.deepEqual(
      job.agent.all('result').map((r) => [r.ok, r.received]),
      [[true, 500]],
    );
    await peer.waitFor('served');
    assert.equal(peer.all('served')[0]!.received, 700);
    await peer.stop();
    await pod.delete();
  });

  it('leaves nothing once pods are deleted and the node is gone', async function () {
    const other = TestNode.create('gone');
    const running = async (name: string) =>
      other.startPod({ namespace: 'ns', name, qos: 'burstable', driver: 'systemd', containers: [{ name: 'app', argv: SLEEP }] });
    const deleted = await running('deleted');
    const left = await running('left');
    const containers: Container[] = [...deleted.containers, ...left.containers];
    const remote = other.addRemoteHost();

    await deleted.delete();
    const c = deleted.containers[0]!;
    assert.ok(!fs.existsSync(`/proc/${c.pid}`), 'the container process is gone');
    assert.ok(!fs.existsSync(path.join(cgroup2Mount()!, deleted.cgroupPath)), 'the pod cgroup is gone');
    assert.ok(fs.existsSync(path.join(cgroup2Mount()!, left.cgroupPath)), "the other pod's cgroup is there");
    assert.ok(!other.runc(['list', '--quiet']).includes(c.id));
    assert.ok(!fs.existsSync(c.logLink) && !fs.existsSync(deleted.logDir), 'its log link and files are gone');
    assert.ok(fs.existsSync(left.containers[0]!.logLink), "the other pod's are there");
    assert.ok(!netnsNames().includes(deleted.netns.name));

    await other.destroy(); // the same as at cleanup
    for (const x of containers) assert.ok(!fs.existsSync(`/proc/${x.pid}`), `${x.name} ${x.pid} is gone`);
    assert.equal(cgroupDirsNamed(other.name), '', 'no cgroup left in any hierarchy');
    assert.ok(!fs.existsSync(other.runcRoot), 'no runc state left');
    assert.ok(!fs.existsSync(other.containersDir), 'no log links left');
    const names = netnsNames();
    for (const ns of [left.netns, remote.netns, other.netns]) assert.ok(!names.includes(ns.name), `${ns.name} is gone`);
    assert.equal(spawnSync('pgrep', ['-af', other.runcRoot], { encoding: 'utf8' }).stdout, '', 'no runc process left');
  });
});
