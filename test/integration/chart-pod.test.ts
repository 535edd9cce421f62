// SPDX-License-Identifier: Apache-2.0
// The chart's pod as the kubelet would start it: the container's arguments,
// the environment the kubelet builds (service links included), root with
// exactly the capabilities the chart grants (applied with capsh), and a
// scrape that finds every probe the values switch on attached.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import net from 'node:net';
import { DEFAULT_BPF_DIR } from '../../src/paths';
import { TestCgroup } from '../helpers/cgroup';
import { container, render, type Obj, type Values } from '../helpers/chart-check';
import { RunningExporter, runCli } from '../helpers/exporter';
import { containerEnv } from '../helpers/kubelet-env';
import { requireRoot, withCapabilities } from '../helpers/privileges';

async function freePort(): Promise<number> {
  const s = net.createServer().listen(0, '127.0.0.1');
  await new Promise((r) => s.once('listening', r));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise((r) => s.close(r));
  return port;
}

interface Pod {
  args: string[];
  env: Record<string, string>;
  caps: string[];
}

/** The rendered DaemonSet's container: its arguments, the environment the
 * kubelet would build (with service links forced on when asked: the
 * kubelet's default, had the chart not turned it off), its capabilities. */
function podOf(values: Values, serviceLinks: boolean): Pod {
  const { one, find } = render(values);
  const ds = one('DaemonSet');
  const pod: Obj = { ...ds.spec.template.spec, enableServiceLinks: serviceLinks ? true : ds.spec.template.spec.enableServiceLinks };
  const c = container(ds);
  assert.deepEqual(c.securityContext.capabilities.drop, ['ALL']);
  return {
    args: c.args,
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', ...containerEnv(pod, c, find('Service')) },
    caps: c.securityContext.capabilities.add,
  };
}

/** Starts it here, as root with exactly its capabilities. */
const start = (p: Pod, caps = p.caps) => new RunningExporter(p.args, p.env, withCapabilities(caps), true);

/** Once ready, the probes /metrics says are up (and that none is down). */
async function probesUp(exporter: RunningExporter): Promise<string[]> {
  await exporter.ready();
  const up = (await exporter.scrape()).find('bpfnet_probe_up');
  assert.deepEqual(
    up.filter((s) => s.value !== 1),
    [],
    'no probe down',
  );
  return up.map((s) => s.labels.probe!);
}

describe("the chart's pod, started as the kubelet starts it", function () {
  before(requireRoot);
  let listen: { host: string; port: number };
  beforeEach(async () => (listen = { host: '127.0.0.1', port: await freePort() }));

  it('turns service links off, and serves metrics with every probe up under BPF and PERFMON alone', async function () {
    const values = { exporter: { listen, bpfDir: DEFAULT_BPF_DIR } };
    const ds = render(values).one('DaemonSet');
    assert.equal(ds.spec.template.spec.enableServiceLinks, false);
    const pod = podOf(values, false);
    assert.deepEqual(pod.caps, ['BPF', 'PERFMON']);
    assert.deepEqual(
      Object.keys(pod.env).filter((k) => k.startsWith('BPFNET_')),
      [],
    );
    // the API server's links come whatever the pod says
    assert.equal(pod.env.KUBERNETES_SERVICE_HOST, '10.96.0.1');
    assert.equal(pod.env.KUBERNETES_PORT_443_TCP, 'tcp://10.96.0.1:443');
    const exporter = start(pod);
    assert.deepEqual(await probesUp(exporter), ['connect', 'accept', 'close']);
    assert.equal((await exporter.stop()).code, 0);
  });

  it("starts with the service-link variables of the chart's Service, were links on", async function () {
    const pod = podOf({ exporter: { listen, bpfDir: DEFAULT_BPF_DIR } }, true);
    const env = pod.env;
    const exporter = start(pod);
    // the chart's Service is bpfnet-exporter: its links carry the flags' prefix
    assert.deepEqual(Object.fromEntries(Object.entries(env).filter(([k]) => k.startsWith('BPFNET_'))), {
      BPFNET_EXPORTER_SERVICE_HOST: '10.96.0.10',
      BPFNET_EXPORTER_SERVICE_PORT: '19435',
      BPFNET_EXPORTER_SERVICE_PORT_METRICS: '19435',
      BPFNET_EXPORTER_PORT: 'tcp://10.96.0.10:19435',
      BPFNET_EXPORTER_PORT_19435_TCP: 'tcp://10.96.0.10:19435',
      BPFNET_EXPORTER_PORT_19435_TCP_PROTO: 'tcp',
      BPFNET_EXPORTER_PORT_19435_TCP_PORT: '19435',
      BPFNET_EXPORTER_PORT_19435_TCP_ADDR: '10.96.0.10',
    });
    assert.equal(env.KUBERNETES_SERVICE_HOST, '10.96.0.1');
    await exporter.ready();
    assert.equal((await exporter.scrape()).find('bpfnet_probe_up').length, 3);
    assert.equal((await exporter.stop()).code, 0);
  });

  it('brings up every probe, the redirect, the run statistics and a /proc netns filter with the capabilities the values add', async function () {
    const cgroup = new TestCgroup('chart-pod');
    // a process of another user: its namespace file needs CAP_SYS_PTRACE
    const other: ChildProcess = spawn('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', 'sleep', '600'], { stdio: 'ignore' });
    try {
      await new Promise((r) => setTimeout(r, 200));
      const netns = `/proc/${other.pid}/ns/net`;
      const values = {
        exporter: {
          listen,
          bpfDir: DEFAULT_BPF_DIR,
          probes: ['connect', 'accept', 'close', 'netstack'],
          enableBpfStats: true,
          filters: { netns: [netns] },
          redirect: { enabled: true, cgroup: cgroup.path },
        },
      };
      const pod = podOf(values, false);
      assert.deepEqual(pod.caps, ['BPF', 'PERFMON', 'NET_ADMIN', 'SYS_ADMIN', 'SYS_PTRACE']);
      const exporter = start(pod);
      assert.deepEqual(await probesUp(exporter), ['connect', 'accept', 'close', 'netstack']);
      const m = await exporter.scrape();
      assert.equal(m.value('bpfnet_redirect_enabled'), 1);
      assert.ok(m.find('bpfnet_bpf_program_run_seconds_total').length > 0, 'run statistics');
      assert.equal((await exporter.stop()).code, 0);

      // one capability fewer: the line names it
      const r = await runCli(pod.args, { env: pod.env, wrap: withCapabilities(pod.caps.filter((c) => c !== 'SYS_PTRACE')) });
      assert.equal(
        r.stderr,
        `bpfnet-exporter: --netns ${netns}: permission denied; another process's namespace needs CAP_SYS_PTRACE (or give its bind mount, /run/netns/NAME)\n`,
      );
      assert.equal(r.code, 1);
    } finally {
      other.kill('SIGKILL');
      await cgroup.destroy();
    }
  });
});
