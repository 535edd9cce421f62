// SPDX-License-Identifier: Apache-2.0
// The socket redirect switched while connections stream (paused and resumed,
// stopped, killed and taken over), its policy, the sidecar pairing through an
// nftables REDIRECT, and bad input. Attached only to cgroups the tests create.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { resolveCgroupDir } from '../../src/filters';
import { pinDir, setPaused } from '../../src/redirect/sock-redirect';
import { spawnEchoAgent, startEchoServer, streamResults, type AgentProcess } from '../helpers/agent';
import { TestCgroup } from '../helpers/cgroup';
import { RunningExporter, runCli, sleep } from '../helpers/exporter';
import { createNetns, type Netns } from '../helpers/netns';
import { requireRoot } from '../helpers/privileges';
import { assertWhole, fallbacks, loBytes, servedBy, startRedirect } from '../helpers/redirect';

const MiB = 1 << 20;

/** A stream of about 3 s: 4 connections of 2 MiB in paced writes up to 64 KiB. */
function slowStream(ns: Netns, port: number, cg: TestCgroup): AgentProcess {
  return spawnEchoAgent(ns, { role: 'stream', host: '127.0.0.1', port, connections: 4, bytes: 2 * MiB, maxWrite: 65536, paceMs: 4 }, cg);
}

/** bpftool's JSON answer; an empty list where it prints nothing (an empty cgroup). */
function bpftool<T>(...args: string[]): T {
  const out = execFileSync('bpftool', [...args, '--json'], { encoding: 'utf8' }).trim();
  return JSON.parse(out || '[]') as T;
}

/** Ids of the programs of the redirect attached to cg now: its sockops
 * program, and the sk_msg program that shares its maps. (Other exporters
 * may run on this machine; only these ids are ours.) */
function instancePrograms(cg: TestCgroup): number[] {
  const [attached] = bpftool<{ id: number }[]>('cgroup', 'show', cg.path);
  assert.ok(attached, `nothing is attached to ${cg.path}`);
  const all = bpftool<{ id: number; type: string; map_ids?: number[] }[]>('prog', 'show');
  const sockops = all.find((p) => p.id === attached.id)!;
  const msg = all.filter((p) => p.type === 'sk_msg' && p.map_ids?.some((m) => sockops.map_ids?.includes(m)));
  return [sockops.id, ...msg.map((p) => p.id)];
}

/** Which of these program ids the kernel still has loaded. */
function stillLoaded(ids: number[]): number[] {
  const loaded = new Set(bpftool<{ id: number }[]>('prog', 'show').map((p) => p.id));
  return ids.filter((id) => loaded.has(id));
}

/** Waits until the exporter has redirected at least `bytes` (the streams are
 * flowing through it), however slowly this machine starts processes. */
async function flowing(exporter: RunningExporter, bytes = 256 * 1024): Promise<void> {
  const m = await exporter.settle((x) => x.sum('bpfnet_redirect_bytes_total') >= bytes, 120_000);
  assert.ok(m.sum('bpfnet_redirect_bytes_total') >= bytes, 'the streams never flowed through the redirect');
}

async function waitFor(what: string, cond: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

describe('socket redirect lifecycle', function () {
  this.timeout(300_000);
  let ns: Netns;
  let cg: TestCgroup;
  let pins: string;

  before(function () {
    requireRoot();
    ns = createNetns('redirect-life');
    cg = new TestCgroup('redirect-life');
    pins = pinDir(resolveCgroupDir(cg.path).id);
  });

  after(async function () {
    await ns?.destroy();
    await cg?.destroy();
  });

  it('pauses and resumes while connections stream: no byte lost, doubled or reordered, and the stack carries exactly the rest', async function () {
    // the close probe measures the payload the stack carried, per connection
    const exporter = await new RunningExporter(['--redirect', '--redirect-cgroup', cg.path, '--probes', 'close', '--netns', ns.path]).ready();
    const server = await startEchoServer(ns, { role: 'echo', host: '127.0.0.1', port: 0 }, cg);
    const client = slowStream(ns, server.port, cg);
    await flowing(exporter);
    setPaused(pins, true);
    await sleep(800);
    const paused = await exporter.scrape();
    setPaused(pins, false);
    const results = await streamResults(client);
    const m = await exporter.settle((x) => x.sum('bpfnet_tcp_closes_total') >= 8);
    await server.stop();
    await exporter.stop();

    assertWhole(results, servedBy(server), 2 * MiB);
    const redirected = m.sum('bpfnet_redirect_bytes_total');
    const stack = m.sum('bpfnet_tcp_sent_bytes_total');
    assert.ok(redirected > 0 && stack > 0, `redirected ${redirected}, stack ${stack}`);
    assert.equal(redirected + stack, 4 * 2 * 2 * MiB);
    assert.ok(fallbacks(m, 'policy') > 0);
    // once their readers had read what the stack carried, the streams went back to the redirect
    assert.ok(redirected > paused.sum('bpfnet_redirect_bytes_total'), 'nothing was redirected after the pause');
  });

  it('starts while connections stream: those stay on the stack, whole; new ones are redirected', async function () {
    const server = await startEchoServer(ns, { role: 'echo', host: '127.0.0.1', port: 0 }, cg);
    const before = slowStream(ns, server.port, cg);
    await waitFor('the streams to connect', () => before.all('connected').length === 4, 120_000);
    const exporter = await startRedirect(cg);
    const after = await streamResults(spawnEchoAgent(ns, { role: 'stream', host: '127.0.0.1', port: server.port, connections: 2, bytes: MiB }, cg));
    const results = await streamResults(before);
    const m = await exporter.scrape();
    await server.stop();
    await exporter.stop();
    const served = servedBy(server);
    assertWhole([...results, ...after], served, 0);
    assert.deepEqual(
      [...results, ...after].map((r) => r.sent),
      [2 * MiB, 2 * MiB, 2 * MiB, 2 * MiB, MiB, MiB],
    );
    assert.equal(m.value('bpfnet_redirect_connections_total', { family: 'ipv4' }), 2);
    assert.equal(m.value('bpfnet_redirect_bytes_total', { family: 'ipv4' }), 2 * 2 * MiB);
    assert.equal(fallbacks(m), 0);
  });

  it('stops on SIGTERM while connections stream: they finish on the stack, and the programs go when they close', async function () {
    const exporter = await startRedirect(cg);
    const ours = instancePrograms(cg);
    assert.equal(ours.length, 2);
    const server = await startEchoServer(ns, { role: 'echo', host: '127.0.0.1', port: 0 }, cg);
    const client = slowStream(ns, server.port, cg);
    await flowing(exporter);
    assert.deepEqual(await exporter.stop(), { code: 0, signal: null });
    // paused, not gone: the streaming sockets still hold the sk_msg program
    assert.equal(stillLoaded(ours).length, 1);
    assert.equal(fs.existsSync(pins), false);
    const results = await streamResults(client);
    await server.stop();
    assertWhole(results, servedBy(server), 2 * MiB);
    await waitFor('the redirect programs to be unloaded', () => stillLoaded(ours).length === 0);
    assert.deepEqual(bpftool('cgroup', 'show', cg.path), []);
  });

  it('stops cleanly on every signal a supervisor or a terminal sends: exit 0, pins removed, nothing attached', async function () {
    for (const signal of ['SIGHUP', 'SIGINT', 'SIGQUIT', 'SIGUSR2', 'SIGALRM', 'SIGPWR'] as const) {
      const exporter = await startRedirect(cg);
      assert.ok(fs.existsSync(path.join(pins, 'sockops')));
      assert.deepEqual(await exporter.stop(signal), { code: 0, signal: null }, signal);
      assert.match(exporter.stderr, new RegExp(`msg=stopping signal=${signal}\\b`));
      assert.equal(fs.existsSync(pins), false, `${signal} left the pins`);
      assert.deepEqual(bpftool('cgroup', 'show', cg.path), [], `${signal} left the sockops program attached`);
    }
  });

  it('after kill -9, a new start takes over the pins while connections stream, and refuses to run beside a live instance', async function () {
    const first = await startRedirect(cg);
    const ours = instancePrograms(cg);
    const server = await startEchoServer(ns, { role: 'echo', host: '127.0.0.1', port: 0 }, cg);
    const client = slowStream(ns, server.port, cg);
    await flowing(first);
    await first.stop('SIGKILL');
    assert.ok(fs.existsSync(path.join(pins, 'sockops')), 'the pins outlive the killed exporter');

    const second = await startRedirect(cg);
    ours.push(...instancePrograms(cg));
    assert.match(second.stderr, /taking over the socket redirect of an exporter that did not stop/);
    const results = await streamResults(client);
    assertWhole(results, servedBy(server), 2 * MiB);
    // only the new programs are attached, and they redirect new connections
    const again = await streamResults(spawnEchoAgent(ns, { role: 'stream', host: '127.0.0.1', port: server.port, connections: 2, bytes: MiB }, cg));
    assertWhole(again, servedBy(server, 4), MiB);
    const m = await second.scrape();
    assert.equal(m.value('bpfnet_redirect_connections_total', { family: 'ipv4' }), 2);
    assert.equal(m.value('bpfnet_redirect_bytes_total', { family: 'ipv4' }), 2 * 2 * MiB);
    assert.deepEqual(
      bpftool<{ name: string }[]>('cgroup', 'show', cg.path).map((a) => a.name),
      ['redirect_sockops'],
    );

    // under emulation (the Linux 6.1 run) node alone takes tens of seconds to start
    const third = await runCli(['redirect', '--redirect-cgroup', cg.path, '--listen', '127.0.0.1:0'], { timeoutMs: 180_000 });
    assert.equal(third.code, 1);
    assert.equal(
      third.stderr.trim(),
      `bpfnet-exporter: another bpfnet-exporter (pid ${second.pid}) redirects sockets of ${cg.path}: stop it first, or give another --redirect-cgroup`,
    );

    await server.stop();
    assert.deepEqual(await second.stop(), { code: 0, signal: null });
    assert.equal(fs.existsSync(pins), false);
    await waitFor('the redirect programs to be unloaded', () => stillLoaded(ours).length === 0);
    assert.deepEqual(bpftool('cgroup', 'show', cg.path), []);
  });

  it('--redirect-ports redirects the pairs with a listed port only', async function () {
    const listed = await startEchoServer(ns, { role: 'echo', host: '127.0.0.1', port: 0 }, cg);
    const other = await startEchoServer(ns, { role: 'echo', host: '127.0.0.1', port: 0 }, cg);
    const exporter = await startRedirect(cg, ['--redirect-ports', String(listed.port)]);
    const a = await streamResults(spawnEchoAgent(ns, { role: 'stream', host: '127.0.0.1', port: listed.port, connections: 2, bytes: MiB }, cg));
    const b = await streamResults(spawnEchoAgent(ns, { role: 'stream', host: '127.0.0.1', port: other.port, connections: 3, bytes: MiB }, cg));
    const m = await exporter.settle((x) => x.value('bpfnet_redirect_sockets', { family: 'ipv4' }) === 0);
    await listed.stop();
    await other.stop();
    await exporter.stop();
    assertWhole(a, servedBy(listed), MiB);
    assertWhole(b, servedBy(other), MiB);
    assert.equal(m.value('bpfnet_redirect_connections_total', { family: 'ipv4' }), 2);
    assert.equal(m.value('bpfnet_redirect_bytes_total', { family: 'ipv4' }), 2 * 2 * MiB);
    // the other pairs left the sockhash at once: nothing of theirs ran sk_msg
    assert.equal(fallbacks(m), 0);
  });

  it('bypasses both legs of a sidecar: an nftables REDIRECT to the proxy, and the proxy to the application from 127.0.0.6', async function () {
    const pod = createNetns('redirect-sidecar');
    try {
      // the "service" address the application calls, routed out of the pod
      pod.run('ip', 'link', 'add', 'svc0', 'type', 'veth', 'peer', 'name', 'svc1');
      pod.run('ip', 'addr', 'add', '10.203.0.2/24', 'dev', 'svc0');
      pod.run('ip', 'link', 'set', 'svc0', 'up');
      pod.run('ip', 'link', 'set', 'svc1', 'up');
      pod.run('ip', 'addr', 'add', '127.0.0.6/8', 'dev', 'lo');
      const app = await startEchoServer(pod, { role: 'echo', host: '127.0.0.1', port: 0 }, cg);
      const proxy = await startEchoServer(
        pod,
        { role: 'proxy', host: '127.0.0.1', port: 0, upstreamHost: '127.0.0.1', upstreamPort: app.port, upstreamLocalAddress: '127.0.0.6' },
        cg,
      );
      pod.nft(`table ip sidecar {
        chain output {
          type nat hook output priority -100;
          ip daddr 10.203.0.1 tcp dport 80 redirect to :${proxy.port}
        }
      }`);
      const exporter = await startRedirect(cg);
      const lo = loBytes(pod);
      const results = await streamResults(spawnEchoAgent(pod, { role: 'stream', host: '10.203.0.1', port: 80, connections: 4, bytes: 2 * MiB }, cg));
      const loCarried = loBytes(pod) - lo;
      const m = await exporter.scrape();
      await proxy.stop();
      await app.stop();
      await exporter.stop();
      assertWhole(results, servedBy(app), 2 * MiB);
      // each connection is two pairs: client-proxy (through NAT) and proxy-app
      assert.equal(m.value('bpfnet_redirect_connections_total', { family: 'ipv4' }), 8);
      assert.equal(m.value('bpfnet_redirect_bytes_total', { family: 'ipv4' }), 4 * 2 * 2 * 2 * MiB);
      assert.equal(fallbacks(m), 0);
      assert.ok(loCarried < 8 * 1024, `loopback carried ${loCarried} bytes`);
    } finally {
      await pod.destroy();
    }
  });

  it('refuses bad redirect flags with one line and exit status 2', async function () {
    const file = path.join(os.tmpdir(), `bpfnet-t${process.pid}-not-a-cgroup`);
    fs.mkdirSync(file, { recursive: true });
    const tooMany = Array.from({ length: 65 }, (_, i) => String(1000 + i)).join(',');
    const missing = '--redirect-cgroup is missing: name the cgroup whose sockets to redirect: kubepods (the pods of a Kubernetes node), ';
    const cases: [string[], string][] = [
      [[], missing],
      [['--redirect-cgroup', ''], missing],
      [['--redirect-cgroup', ' '], missing],
      [['--redirect-cgroup', 'kubepods'], '--redirect-cgroup kubepods: neither kubepods.slice (systemd cgroup driver) nor kubepods (cgroupfs) is under '],
      [['--redirect-cgroup', '/nonexistent/cg'], '--redirect-cgroup /nonexistent/cg: no such cgroup; give a directory under '],
      [['--redirect-cgroup', file], `--redirect-cgroup ${file}: not a cgroup v2 directory; give a directory under `],
      [['--redirect-cgroup', cg.path, '--redirect-ports', '70000'], '--redirect-ports 70000: not a port; give 1 to 65535'],
      [['--redirect-cgroup', cg.path, '--redirect-ports', 'http'], '--redirect-ports http: not a number; give a positive integer'],
      [['--redirect-cgroup', cg.path, '--redirect-ports', tooMany], '--redirect-ports: 65 ports; give at most 64'],
    ];
    try {
      for (const [args, message] of cases) {
        const r = await runCli(['redirect', '--listen', '127.0.0.1:0', ...args]);
        assert.equal(r.code, 2, r.stderr);
        assert.equal(r.stderr.split('\n').filter(Boolean).length, 1, r.stderr);
        assert.ok(r.stderr.startsWith(`bpfnet-exporter: ${message}`), r.stderr);
      }
      // one empty templated value (a chart's, a unit file's) is refused too, for run --redirect too
      const env = await runCli(['run', '--redirect', '--listen', '127.0.0.1:0'], { env: { BPFNET_REDIRECT_CGROUP: '' } });
      assert.equal(env.code, 2, env.stderr);
      assert.equal(env.stderr, 'bpfnet-exporter: BPFNET_REDIRECT_CGROUP is empty: give a value, or unset it\n');
    } finally {
      fs.rmSync(file, { recursive: true, force: true });
    }
    assert.equal(fs.existsSync(pins), false);
  });
});
