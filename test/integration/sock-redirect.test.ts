// SPDX-License-Identifier: Apache-2.0
// The socket redirect on real traffic, attached to cgroups the tests create
// (never the machine's root cgroup): streams arrive whole, what was bypassed
// is counted exactly (the kernel's own run count of the sk_msg program, the
// close probe's payload count and loopback's byte counter agree), and what
// must not be redirected is not.
import assert from 'node:assert/strict';
import { spawnEchoAgent, startEchoServer, streamResults } from '../helpers/agent';
import { TestCgroup } from '../helpers/cgroup';
import { RunningExporter } from '../helpers/exporter';
import { createNetns, type Netns } from '../helpers/netns';
import { requireRoot } from '../helpers/privileges';
import { assertWhole, fallbacks, loBytes, servedBy, startRedirect } from '../helpers/redirect';

const MiB = 1 << 20;

describe('socket redirect', function () {
  this.timeout(300_000);
  let ns: Netns;
  let cg: TestCgroup;

  before(function () {
    requireRoot();
    ns = createNetns('redirect');
    cg = new TestCgroup('redirect');
  });

  after(async function () {
    await ns?.destroy();
    await cg?.destroy();
  });

  it('delivers 64 concurrent 8 MiB echo streams whole, counting every byte and message exactly, redirected or, held back, on the stack', async function () {
    // the close probe counts the payload the stack carried, per connection
    const exporter = await new RunningExporter([
      '--redirect',
      '--redirect-cgroup',
      cg.path,
      '--probes',
      'close',
      '--netns',
      ns.path,
      '--enable-bpf-stats',
    ]).ready();
    const server = await startEchoServer(ns, { role: 'echo', host: '127.0.0.1', port: 0 }, cg);
    const lo = loBytes(ns);
    const client = spawnEchoAgent(ns, { role: 'stream', host: '127.0.0.1', port: server.port, connections: 64, bytes: 8 * MiB }, cg);
    const results = await streamResults(client);
    const m = await exporter.settle((x) => x.value('bpfnet_redirect_sockets', { family: 'ipv4' }) === 0 && x.sum('bpfnet_tcp_closes_total') >= 128);
    const loCarried = loBytes(ns) - lo;
    await server.stop();
    await exporter.stop();

    assertWhole(results, servedBy(server), 8 * MiB);
    const total = 64 * 8 * MiB * 2; // each stream, then its echo
    const redirected = m.value('bpfnet_redirect_bytes_total', { family: 'ipv4' });
    const stack = m.sum('bpfnet_tcp_sent_bytes_total');
    assert.equal(m.value('bpfnet_redirect_connections_total', { family: 'ipv4' }), 64);
    assert.equal(redirected + stack, total);
    assert.ok(redirected > total / 2, `only ${redirected} of ${total} bytes were redirected`);
    // the echo server stops reading while its echo waits: its writers were
    // held back on the stack; nothing else sent a message there
    assert.equal(fallbacks(m), fallbacks(m, 'receiver_full') + fallbacks(m, 'stack_used'));
    // every run of the sk_msg program redirected one message or sent it to the stack
    assert.equal(m.sum('bpfnet_redirect_messages_total') + fallbacks(m), m.value('bpfnet_bpf_program_runs_total', { program: 'redirect_msg' }));
    assert.ok(m.sum('bpfnet_redirect_messages_total') >= results.reduce((a, r) => a + r.writes, 0) / 64, 'messages were counted');
    // loopback carried what the stack carried (with headers, handshakes,
    // acknowledgements), and none of what was redirected
    assert.ok(loCarried >= stack && loCarried < stack + redirected / 10, `loopback carried ${loCarried} bytes, the stack ${stack}, the redirect ${redirected}`);
    assert.equal(m.value('bpfnet_redirect_sockets', { family: 'ipv4' }), 0);
  });

  it('pairs IPv6 and IPv4-mapped connections and counts them by family', async function () {
    const exporter = await startRedirect(cg);
    const v6 = await startEchoServer(ns, { role: 'echo', host: '::1', port: 0 }, cg);
    const v4 = await startEchoServer(ns, { role: 'echo', host: '127.0.0.1', port: 0 }, cg);
    const r6 = await streamResults(spawnEchoAgent(ns, { role: 'stream', host: '::1', port: v6.port, connections: 3, bytes: MiB }, cg));
    // an AF_INET6 socket to ::ffff:127.0.0.1 meets an AF_INET one: IPv4 traffic
    const rm = await streamResults(spawnEchoAgent(ns, { role: 'stream', host: '::ffff:127.0.0.1', port: v4.port, connections: 2, bytes: MiB }, cg));
    const m = await exporter.scrape();
    await v6.stop();
    await v4.stop();
    await exporter.stop();
    assertWhole(r6, servedBy(v6), MiB);
    assertWhole(rm, servedBy(v4), MiB);
    assert.deepEqual(
      ['ipv4', 'ipv6'].map((family) => [m.value('bpfnet_redirect_connections_total', { family }), m.value('bpfnet_redirect_bytes_total', { family })]),
      [
        [2, 2 * 2 * MiB],
        [3, 3 * 2 * MiB],
      ],
    );
    assert.equal(fallbacks(m), 0);
  });

  it('ends half-closed and reset connections as the stack would', async function () {
    const exporter = await startRedirect(cg);
    const server = await startEchoServer(ns, { role: 'echo', host: '127.0.0.1', port: 0 }, cg);
    // half-close: the client's FIN comes after its redirected bytes, and the
    // server still echoes everything back before closing its side
    const half = await streamResults(
      spawnEchoAgent(ns, { role: 'stream', host: '127.0.0.1', port: server.port, connections: 4, bytes: 300_000, maxWrite: 4096 }, cg),
    );
    assertWhole(half, servedBy(server), 300_000);
    const served = server.all('served').length;
    // reset after 100 kB: the server sees the reset, nothing hangs
    const reset = await streamResults(
      spawnEchoAgent(ns, { role: 'stream', host: '127.0.0.1', port: server.port, connections: 4, bytes: 200_000, resetAfter: 100_000 }, cg),
    );
    const deadline = Date.now() + 10_000;
    while (server.all('served').length < served + 4 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    const m = await exporter.settle((x) => x.value('bpfnet_redirect_sockets', { family: 'ipv4' }) === 0);
    await server.stop();
    await exporter.stop();
    assert.deepEqual(
      reset.map((r) => r.sent),
      [100_000, 100_000, 100_000, 100_000],
    );
    assert.deepEqual(
      server
        .all('served')
        .slice(served)
        .map((s) => s.error),
      ['ECONNRESET', 'ECONNRESET', 'ECONNRESET', 'ECONNRESET'],
    );
    assert.equal(m.value('bpfnet_redirect_connections_total', { family: 'ipv4' }), 8);
    assert.equal(m.value('bpfnet_redirect_sockets', { family: 'ipv4' }), 0);
  });

  it('leaves alone connections from outside the cgroup, and to a host that is not here', async function () {
    const exporter = await startRedirect(cg);
    const inside = await startEchoServer(ns, { role: 'echo', host: '127.0.0.1', port: 0 }, cg);
    const fromOutside = await streamResults(spawnEchoAgent(ns, { role: 'stream', host: '127.0.0.1', port: inside.port, connections: 2, bytes: MiB }));
    assertWhole(fromOutside, servedBy(inside), MiB);

    // "another host": a server outside the cgroup, behind a veth pair
    const other = createNetns('redirect-other');
    try {
      ns.veth('rd0', '10.201.0.1/24', other, 'rd1', '10.201.0.2/24');
      const remote = await startEchoServer(other, { role: 'echo', host: '10.201.0.2', port: 0 });
      const toRemote = await streamResults(spawnEchoAgent(ns, { role: 'stream', host: '10.201.0.2', port: remote.port, connections: 2, bytes: MiB }, cg));
      assertWhole(toRemote, servedBy(remote), MiB);
      await remote.stop();
    } finally {
      await other.destroy();
    }
    const m = await exporter.settle((x) => x.value('bpfnet_redirect_sockets', { family: 'ipv4' }) === 0);
    await inside.stop();
    await exporter.stop();
    assert.equal(m.sum('bpfnet_redirect_connections_total'), 0);
    assert.equal(m.sum('bpfnet_redirect_bytes_total'), 0);
    // the connecting sockets to the remote host waited in the sockhash until
    // their first acknowledged bytes showed they had no peer here
    assert.equal(m.value('bpfnet_redirect_sockets', { family: 'ipv4' }), 0);
    assert.equal(fallbacks(m), fallbacks(m, 'peer_missing'));
  });

  it('pairs two network namespaces of this host (pods on one node) joined by veth', async function () {
    const exporter = await startRedirect(cg);
    const pod = createNetns('redirect-pod');
    try {
      ns.veth('rp0', '10.202.0.1/24', pod, 'rp1', '10.202.0.2/24');
      const server = await startEchoServer(pod, { role: 'echo', host: '10.202.0.2', port: 0 }, cg);
      const results = await streamResults(spawnEchoAgent(ns, { role: 'stream', host: '10.202.0.2', port: server.port, connections: 4, bytes: 2 * MiB }, cg));
      const m = await exporter.scrape();
      await server.stop();
      assertWhole(results, servedBy(server), 2 * MiB);
      assert.equal(m.value('bpfnet_redirect_connections_total', { family: 'ipv4' }), 4);
      assert.equal(m.value('bpfnet_redirect_bytes_total', { family: 'ipv4' }), 4 * 2 * 2 * MiB);
      assert.equal(fallbacks(m), 0);
    } finally {
      await exporter.stop();
      await pod.destroy();
    }
  });
});
