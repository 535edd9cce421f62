// SPDX-License-Identifier: Apache-2.0
// The socket redirect with readers that fall behind: a writer is held back
// about as far as the stack holds it back, TCP memory stays bounded, no
// write fails, every byte arrives, and the queue of unread redirected bytes
// is visible. Each case runs on the stack first (the same cgroup before the
// redirect is attached), then with the redirect, and compares the two.
// Attached only to a cgroup the test creates.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { spawnEchoAgent, startEchoServer, streamResults } from '../helpers/agent';
import { TestCgroup } from '../helpers/cgroup';
import { onCleanup } from '../helpers/cleanup';
import { RunningExporter } from '../helpers/exporter';
import { createNetns, type Netns } from '../helpers/netns';
import { requireRoot } from '../helpers/privileges';
import { assertWhole, fallbacks, servedBy } from '../helpers/redirect';
import type { Metrics } from '../helpers/prom-text';
import { buildSlowPeer, CHUNK, PAGE, startFastWriter, startSlowReader, tcpMemory, type FastWriter, type SlowReader } from '../helpers/slow-peer';

const MiB = 1 << 20;

interface Stalled {
  reader: SlowReader;
  writer: FastWriter;
  /** bytes the writer got ahead when it blocked */
  lead: number;
  /** TCP memory of the host that took */
  memory: number;
}

describe('socket redirect backpressure', function () {
  this.timeout(600_000);
  let ns: Netns;
  let cg: TestCgroup;

  before(function () {
    requireRoot();
    buildSlowPeer();
    ns = createNetns('backpressure');
    cg = new TestCgroup('backpressure');
  });

  after(async function () {
    await ns?.destroy();
    await cg?.destroy();
  });

  /** conns writers against a reader that reads nothing yet, until they block. */
  async function stall(conns: number, bytes: number, opts: { nonBlocking?: boolean; hold?: boolean } = {}): Promise<Stalled> {
    const before = tcpMemory();
    const reader = await startSlowReader(ns, cg, { conns });
    const writer = startFastWriter(ns, cg, { port: reader.port, conns, bytes, ...opts });
    await reader.line('accepted');
    const lead = await writer.blocked();
    return { reader, writer, lead, memory: tcpMemory() - before };
  }

  /** Lets the reader read; every connection then arrives whole, and no call failed. */
  async function finish(s: Stalled, conns: number, bytes: number): Promise<void> {
    s.reader.go();
    const read = await s.reader.results();
    const { wrote, errors } = await s.writer.results();
    assert.deepEqual(errors, []);
    assert.equal(wrote.size, conns);
    for (const [port, w] of wrote) {
      assert.equal(w.bytes, bytes);
      assert.deepEqual(read.get(port), w, `connection from port ${port}`);
    }
  }

  /** The exporter with the redirect on cg, and the close probe to count what the stack carried. */
  function startExporter(): Promise<RunningExporter> {
    return new RunningExporter(['--redirect', '--redirect-cgroup', cg.path, '--probes', 'close', '--netns', ns.path]).ready();
  }

  /** Bytes the stack carried (the close probe's payload count) plus the redirect's are what was written. */
  async function assertCounted(exporter: RunningExporter, closes: number, written: number): Promise<Metrics> {
    const m = await exporter.settle((x) => x.sum('bpfnet_tcp_closes_total') >= closes && x.sum('bpfnet_redirect_queued_bytes') === 0);
    assert.equal(m.sum('bpfnet_tcp_closes_total'), closes);
    assert.equal(m.sum('bpfnet_redirect_bytes_total') + m.sum('bpfnet_tcp_sent_bytes_total'), written);
    assert.equal(m.sum('bpfnet_redirect_queued_bytes'), 0);
    return m;
  }

  it('holds back a writer whose reader never reads as the stack does: its lead within 4x, no error, every byte intact once it reads', async function () {
    const bytes = 64 * MiB;
    const plain = await stall(1, bytes);
    await finish(plain, 1, bytes);

    const exporter = await startExporter();
    const r = await stall(1, bytes, { hold: true });
    const held = await exporter.scrape();
    // the writer holds its last send until the reader has read the rest:
    // then the stack holds nothing unread, and that send may take the redirect
    r.reader.go();
    await r.reader.read(bytes - CHUNK);
    await r.writer.release();
    await finish(r, 1, bytes);
    const m = await assertCounted(exporter, 2, bytes);
    await exporter.stop();

    // (the lead only: the host's TCP memory count moves in steps of 1 MiB a
    // CPU, as coarse as one connection's buffers; 64 connections test it)
    assert.ok(r.lead <= 4 * plain.lead, `lead ${r.lead} with redirect, ${plain.lead} on the stack`);
    // what waited unread was exactly what had been redirected, and it was the one queue
    const redirected = held.sum('bpfnet_redirect_bytes_total');
    assert.ok(redirected > 0, 'the writer started on the redirect');
    assert.equal(held.value('bpfnet_redirect_queued_bytes', { family: 'ipv4' }), redirected);
    assert.equal(held.value('bpfnet_redirect_queued_bytes_max', { family: 'ipv4' }), redirected);
    assert.equal(fallbacks(held, 'receiver_full'), 1);
    // once the reader had read what the stack carried, the writer went back
    // to the redirect: at least its last send did
    assert.ok(m.sum('bpfnet_redirect_bytes_total') >= redirected + CHUNK, 'the writer returned to the redirect');
    assert.equal(fallbacks(m, 'memory_pressure') + fallbacks(m, 'redirect_failed') + fallbacks(m, 'peer_missing'), 0);
  });

  it('keeps a writer within reach of a reader that reads 1 MiB/s, as the stack does, every byte intact', async function () {
    const bytes = 20 * MiB;
    /** The most the writer was ahead of the reader while the reader read. */
    const paced = async (): Promise<number> => {
      const reader = await startSlowReader(ns, cg, { rate: MiB, now: true });
      const writer = startFastWriter(ns, cg, { port: reader.port, bytes, nonBlocking: true });
      const [read, { wrote, errors }] = await Promise.all([reader.results(), writer.results()]);
      assert.deepEqual(errors, []);
      assert.deepEqual([...read.values()], [...wrote.values()]);
      assert.equal([...wrote.values()][0]!.bytes, bytes);
      // lead: what the writer had sent at each of its reports, less what the reader had read by then
      const got = reader.progress('got');
      let lead = 0;
      for (const [t, sent] of writer.progress('sent')) {
        const read = got.filter(([tr]) => tr <= t).pop()?.[1] ?? 0;
        lead = Math.max(lead, sent - read);
      }
      return lead;
    };
    const plain = await paced();
    const exporter = await startExporter();
    const lead = await paced();
    const m = await assertCounted(exporter, 2, bytes);
    await exporter.stop();
    assert.ok(lead <= 4 * plain, `lead ${lead} with redirect, ${plain} on the stack`);
    assert.ok(fallbacks(m, 'receiver_full') >= 1);
    assert.ok(m.sum('bpfnet_redirect_bytes_total') > 0);
  });

  it('bounds TCP memory with 64 stalled readers at once, while an unrelated connection of the cgroup stays on the redirect', async function () {
    const conns = 64;
    const bytes = 16 * MiB;
    const plain = await stall(conns, bytes);
    await finish(plain, conns, bytes);

    const exporter = await startExporter();
    const r = await stall(conns, bytes, { nonBlocking: true });
    // meanwhile, in the same cgroup, an IPv6 stream whose reader keeps up
    const v6 = await startEchoServer(ns, { role: 'echo', host: '::1', port: 0 }, cg);
    const other = await streamResults(spawnEchoAgent(ns, { role: 'stream', host: '::1', port: v6.port, connections: 1, bytes: 8 * MiB }, cg));
    const during = await exporter.scrape();
    await finish(r, conns, bytes);
    await v6.stop();
    const m = await assertCounted(exporter, 2 * conns + 2, conns * bytes + 2 * 8 * MiB);
    await exporter.stop();

    assertWhole(other, servedBy(v6), 8 * MiB);
    assert.ok(r.memory <= 4 * plain.memory, `TCP memory ${r.memory} with redirect, ${plain.memory} on the stack`);
    assert.ok(r.lead <= 4 * plain.lead, `lead ${r.lead} with redirect, ${plain.lead} on the stack`);
    // the stream and its echo went through the redirect, held back only by
    // their own readers (the echo server writes back as it reads), never by
    // the stalled ones: no memory pressure, every byte counted once
    const v6Stack = m.sum('bpfnet_tcp_sent_bytes_total', { family: 'ipv6' });
    assert.equal(m.value('bpfnet_redirect_bytes_total', { family: 'ipv6' }) + v6Stack, 2 * 8 * MiB);
    assert.ok(during.value('bpfnet_redirect_bytes_total', { family: 'ipv6' }) > v6Stack, `only ${v6Stack} of 16 MiB took the stack`);
    assert.equal(fallbacks(m, 'memory_pressure'), 0);
    assert.equal(fallbacks(m, 'receiver_full', 'ipv4'), conns);
  });

  it('under TCP memory pressure blocks a writer on the stack instead of failing its write with ENOMEM', async function () {
    const TCP_MEM = '/proc/sys/net/ipv4/tcp_mem';
    const bytes = 16 * MiB;
    const exporter = await startExporter();
    // the host's TCP memory limits lowered to just above what is in use: the
    // kernel watches from 1 MiB more, refuses sockets more than their share
    // from 4 MiB more (a refused redirect fails the write; the stack makes
    // writers wait), nothing past 8 MiB. (The gaps are wider than the 1 MiB
    // a CPU the kernel keeps from the host's count.)
    const saved = fs.readFileSync(TCP_MEM, 'utf8').trim();
    const restore = onCleanup('net.ipv4.tcp_mem', () => fs.writeFileSync(TCP_MEM, saved));
    let r: Stalled;
    try {
      const used = tcpMemory() / PAGE;
      fs.writeFileSync(TCP_MEM, `${used + MiB / PAGE} ${used + (4 * MiB) / PAGE} ${used + (8 * MiB) / PAGE}`);
      r = await stall(1, bytes);
    } finally {
      // (before any scrape: the exporter answers over TCP too)
      await restore();
    }
    await finish(r, 1, bytes);
    const m = await assertCounted(exporter, 2, bytes);
    await exporter.stop();
    assert.ok(fallbacks(m, 'memory_pressure') >= 1, 'the pressure sent messages to the stack');
    assert.equal(fallbacks(m, 'receiver_full'), 0);
  });
});
