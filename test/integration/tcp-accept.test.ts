// SPDX-License-Identifier: Apache-2.0
// The accept probe against the real kernel: passive opens by listening port,
// attributed to the process whose accept() returned them, with the handshake
// and the accept-queue wait in the buckets the test's own delays put them in.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { runClient, startClient, startServer } from '../helpers/agent';
import { onCleanup } from '../helpers/cleanup';
import { RunningExporter, sleep } from '../helpers/exporter';
import { createNetns, type Netns } from '../helpers/netns';
import { requireRoot } from '../helpers/privileges';

describe('accept probe', function () {
  let ns: Netns;

  before(function () {
    requireRoot();
    ns = createNetns('accept');
  });

  after(async function () {
    await ns?.destroy();
  });

  it('counts passive opens by port and family exactly, as the kernel does', async function () {
    const exporter = await new RunningExporter(['--probes', 'accept', '--netns', ns.path]).ready();
    const v4 = await startServer(ns, { host: '127.0.0.1', port: 0, down: 5 });
    const dual = await startServer(ns, { host: '::', port: 0, down: 5 }); // IPv6 socket, IPv4 peers too
    const before = ns.tcpCounters().PassiveOpens;
    await runClient(ns, { host: '127.0.0.1', port: v4.port, connections: Array(4).fill({ up: 10 }) });
    await runClient(ns, { host: '::1', port: dual.port, connections: Array(3).fill({ up: 10 }) });
    await runClient(ns, { host: '127.0.0.1', port: dual.port, connections: Array(2).fill({ up: 10 }) }); // ::ffff:127.0.0.1
    const m = await exporter.scrape();
    await exporter.stop();
    assert.deepEqual(
      m
        .find('bpfnet_tcp_accepts_total')
        .map((s) => [s.labels.family, s.labels.port, s.labels.comm, s.value])
        .sort(),
      [
        ['ipv4', String(dual.port), 'test-server', 2],
        ['ipv4', String(v4.port), 'test-server', 4],
        ['ipv6', String(dual.port), 'test-server', 3],
      ].sort(),
    );
    assert.equal(ns.tcpCounters().PassiveOpens - before, 9);
    assert.equal(m.value('bpfnet_tcp_accept_queue_duration_seconds_count', { family: 'ipv4' }), 6);
    assert.equal(m.value('bpfnet_tcp_accept_handshake_duration_seconds_count', { family: 'ipv6' }), 3);
    await v4.stop();
    await dual.stop();
  });

  it('attributes an accept to the process that called accept(), not to the connecting one', async function () {
    // on loopback the handshake completes in the connecting process's context:
    // a probe reading the current process there would see the client
    const server = await startServer(ns, { host: '127.0.0.1', port: 0, down: 5 });
    const exporter = await new RunningExporter(['--probes', 'connect,accept', '--netns', ns.path, '--pid', String(server.pid)]).ready();
    const client = await runClient(ns, { host: '127.0.0.1', port: server.port, connections: Array(3).fill({ up: 10 }) });
    assert.notEqual(client.pid, server.pid);
    const m = await exporter.scrape();
    assert.deepEqual(
      m.find('bpfnet_tcp_accepts_total').map((s) => [s.labels.port, s.labels.comm, s.value]),
      [[String(server.port), 'test-server', 3]],
    );
    assert.equal(m.sum('bpfnet_tcp_connects_total'), 0, 'the client is not the filtered process');
    await exporter.stop();
    await server.stop();
  });

  it('labels commands that are not UTF-8 with escapes, one series each, which promtool accepts', async function () {
    const exporter = await new RunningExporter(['--probes', 'accept', '--netns', ns.path]).ready();
    // two names that differ only in a byte that is not UTF-8, one with a
    // literal backslash that looks like an escape, one valid UTF-8 name
    const names: [string, Buffer][] = [
      ['test-\\xff', Buffer.from('test-\xff', 'latin1')],
      ['test-\\xfe', Buffer.from('test-\xfe', 'latin1')],
      ['test-\\x5cxff', Buffer.from('test-\\xff', 'latin1')],
      ['tëst-😀', Buffer.from('tëst-😀')],
    ];
    const expected: [string, string, number][] = [];
    const servers = [];
    for (const [i, [label, comm]] of names.entries()) {
      const server = await startServer(ns, { host: '127.0.0.1', port: 0, down: 5, commHex: comm.toString('hex') });
      servers.push(server);
      await runClient(ns, { host: '127.0.0.1', port: server.port, connections: Array(i + 1).fill({ up: 10 }) });
      expected.push([String(server.port), label, i + 1]);
    }
    const { body } = await exporter.metricsText();
    const m = await exporter.scrape();
    await exporter.stop();
    assert.deepEqual(
      m
        .find('bpfnet_tcp_accepts_total')
        .map((s) => [s.labels.port, s.labels.comm, s.value])
        .sort(),
      expected.sort(),
    );
    assert.ok(!body.includes('\ufffd'), 'the body is valid UTF-8: its decoder replaced nothing');
    assert.equal(execFileSync('promtool', ['check', 'metrics'], { input: body, encoding: 'utf8' }), '');
    for (const s of servers) await s.stop();
  });

  it('counts the connects of a filtered client process and not the accepts of its server', async function () {
    const server = await startServer(ns, { host: '127.0.0.1', port: 0, down: 5 });
    const client = startClient(ns, { host: '127.0.0.1', port: server.port, waitForGo: true, connections: Array(2).fill({ up: 10 }) });
    const started = await client.waitFor('started');
    const exporter = await new RunningExporter(['--probes', 'connect,accept', '--netns', ns.path, '--pid', String(started.pid)]).ready();
    client.go();
    await client.waitFor('done');
    const m = await exporter.scrape();
    await exporter.stop();
    assert.equal(m.value('bpfnet_tcp_connects_total', { family: 'ipv4', result: 'established' }), 2);
    assert.equal(m.sum('bpfnet_tcp_accepts_total'), 0);
    await server.stop();
  });

  it('puts the accept-queue wait of connections left unaccepted for 1.5 s in the (1.07 s, 2.15 s] bucket', async function () {
    this.timeout(30_000);
    const exporter = await new RunningExporter(['--probes', 'accept', '--netns', ns.path]).ready();
    // the server calls no accept() until the file exists; two clients connect
    // meanwhile (in the kernel), and the test waits 1.5 s before creating it
    const go = path.join(os.tmpdir(), `bpfnet-accept-${process.pid}`);
    onCleanup(go, () => fs.rmSync(go, { force: true }));
    const server = await startServer(ns, { host: '127.0.0.1', port: 0, down: 5, holdUntilFile: go });
    const clients = [0, 1].map(() => startClient(ns, { host: '127.0.0.1', port: server.port, connections: [{ up: 10 }] }));
    await Promise.all(clients.map((c) => c.waitFor('connected')));
    await sleep(1500);
    fs.writeFileSync(go, '');
    await Promise.all(clients.map((c) => c.waitFor('done')));
    const b = (await exporter.scrape()).buckets('bpfnet_tcp_accept_queue_duration_seconds', { family: 'ipv4' });
    await exporter.stop();
    assert.equal(b.get('1.073741824'), 0);
    assert.equal(b.get('2.147483648'), 2);
    assert.equal(b.get('+Inf'), 2);
    await server.stop();
  });

  it('counts once, with no command, a connection reset while it waited in the accept queue', async function () {
    const exporter = await new RunningExporter(['--probes', 'accept', '--netns', ns.path]).ready();
    const go = path.join(os.tmpdir(), `bpfnet-reset-${process.pid}`);
    onCleanup(go, () => fs.rmSync(go, { force: true }));
    const server = await startServer(ns, { host: '127.0.0.1', port: 0, down: 5, holdUntilFile: go });
    const before = ns.tcpCounters().PassiveOpens;
    await runClient(ns, { host: '127.0.0.1', port: server.port, connections: [{ up: 10, ending: 'reset' }] });
    fs.writeFileSync(go, '');
    const m = await exporter.settle((x) => x.sum('bpfnet_tcp_accepts_total') > 0);
    await exporter.stop();
    assert.deepEqual(
      m.find('bpfnet_tcp_accepts_total').map((s) => [s.labels.port, s.labels.comm, s.value]),
      [[String(server.port), '', 1]],
    );
    assert.equal(m.value('bpfnet_tcp_accept_queue_duration_seconds_count', { family: 'ipv4' }), 0);
    assert.equal(m.value('bpfnet_tcp_accept_handshake_duration_seconds_count', { family: 'ipv4' }), 1);
    assert.equal(ns.tcpCounters().PassiveOpens - before, 1);
    await server.stop();
  });

  it('times a handshake whose final ACK was lost from the first SYN-ACK, in the (0.54 s, 1.07 s] bucket', async function () {
    this.timeout(30_000);
    const exporter = await new RunningExporter(['--probes', 'accept', '--netns', ns.path]).ready();
    const server = await startServer(ns, { host: '127.0.0.1', port: 0, down: 5 });
    // the handshake's last ACK is lost; the server retransmits its SYN-ACK
    // after 1 s, and that one is answered. The client sends nothing before
    // the server is established (its data would complete the handshake)
    ns.nft(`table ip lose {
      chain input { type filter hook input priority 0; tcp dport ${server.port} tcp flags & (syn | ack | fin | rst | psh) == ack counter drop; }
    }`);
    const client = startClient(ns, { host: '127.0.0.1', port: server.port, connections: [{ up: 10, waitForGo: true }] });
    await ns.waitForPackets('ip lose', 1);
    ns.nft('delete table ip lose');
    await exporter.settle((m) => m.sum('bpfnet_tcp_accepts_total') === 1, 20_000);
    client.go();
    await client.waitFor('done');
    const m = await exporter.scrape();
    await exporter.stop();
    const b = m.buckets('bpfnet_tcp_accept_handshake_duration_seconds', { family: 'ipv4' });
    assert.equal(b.get('0.536870912'), 0);
    assert.equal(b.get('1.073741824'), 1);
    await server.stop();
  });
});
