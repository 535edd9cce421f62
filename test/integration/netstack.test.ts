// SPDX-License-Identifier: Apache-2.0
// The netstack probe against the real kernel: two network namespaces joined
// by a veth pair, a token bucket that holds back known packets for a known
// time, an nftables rule that drops known packets, resets and
// retransmissions caused on purpose and compared with the kernel's own
// counters (/proc/net/snmp), and the packet-tracking map's size.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { AgentProcess, runClient, startClient, startServer } from '../helpers/agent';
import { RunningExporter, sleep } from '../helpers/exporter';
import { TestCgroup } from '../helpers/cgroup';
import { createNetns, type Netns } from '../helpers/netns';
import { requireRoot } from '../helpers/privileges';
import type { Metrics } from '../helpers/prom-text';
import type { ReceiveSpec, SendSpec } from '../helpers/udp-agent';
import { Kind, vmlinuxBtf } from '../../src/libbpf';

const UDP_AGENT = path.join(__dirname, '..', 'helpers', 'udp-agent.js');
const LATENCY = 'bpfnet_netstack_latency_seconds';
// bucket bounds: 2^23, 2^26 and 2^27 ns
const LE_8MS = '0.008388608';
const LE_67MS = '0.067108864';
const LE_134MS = '0.134217728';
// what older kernels lack: tcp:tcp_sendmsg_locked (the send stage), and a
// tcp_send_reset tracepoint for resets sent without a socket (6.10's
// "fully support trace_tcp_send_reset", which came with enum sk_rst_reason)
const btf = vmlinuxBtf();
const HAS_SEND_STAGE = btf.find('btf_trace_tcp_sendmsg_locked', Kind.Typedef) !== undefined;
const TRACES_SOCKETLESS_RESETS = btf.find('sk_rst_reason', Kind.Enum) !== undefined;

async function udp(ns: Netns, spec: ReceiveSpec | SendSpec): Promise<AgentProcess> {
  const agent = new AgentProcess(ns.spawn(process.execPath, [UDP_AGENT, JSON.stringify(spec)]));
  await agent.waitFor('ready');
  return agent;
}

/** Entries now in a map of the exporter's (by bpftool, as an operator would
 * look); only one exporter with these maps runs at a time. */
function mapEntries(name: string): number {
  const maps = JSON.parse(execFileSync('bpftool', ['-j', 'map', 'show'], { encoding: 'utf8' })) as { id: number; name: string }[];
  const ours = maps.filter((m) => m.name === name);
  assert.equal(ours.length, 1, `one map named ${name}`);
  return (JSON.parse(execFileSync('bpftool', ['-j', 'map', 'dump', 'id', String(ours[0]!.id)], { encoding: 'utf8', maxBuffer: 1 << 28 })) as unknown[]).length;
}

/** Entries of a packet-tracking map (struct pkt values) on devices of the
 * network namespace with this inode number, by bpftool's BTF view. */
function entriesIn(name: string, netns: string): number {
  const maps = JSON.parse(execFileSync('bpftool', ['-j', 'map', 'show'], { encoding: 'utf8' })) as { id: number; name: string }[];
  const id = maps.find((m) => m.name === name)!.id;
  const dump = JSON.parse(execFileSync('bpftool', ['-j', 'map', 'dump', 'id', String(id)], { encoding: 'utf8', maxBuffer: 1 << 28 })) as {
    formatted: { value: { netns: number } };
  }[];
  return dump.filter((e) => String(e.formatted.value.netns) === netns).length;
}

describe('netstack probe', function () {
  let a: Netns;
  let b: Netns;
  let exporter: RunningExporter;
  const inode = (ns: Netns) => String(fs.statSync(ns.path).ino);
  const stage = (ns: Netns, direction: string, name: string, ifname: string) => ({ direction, stage: name, ifname, netns: inode(ns) });
  /** bucket counts (by le, and the total) that m added to since before */
  const added = (before: Metrics, m: Metrics, labels: Record<string, string>) => {
    const was = before.buckets(LATENCY, labels);
    const out = new Map([...m.buckets(LATENCY, labels)].map(([le, n]) => [le, n - (was.get(le) ?? 0)]));
    out.set('count', m.value(`${LATENCY}_count`, labels) - before.value(`${LATENCY}_count`, labels));
    return out;
  };

  before(async function () {
    requireRoot();
    a = createNetns('netstack-a');
    b = createNetns('netstack-b');
    // nothing but the test's packets on the pair: no IPv6 (router and
    // neighbour solicitations), no ARP
    for (const ns of [a, b]) for (const conf of ['all', 'default']) ns.sysctl(`net.ipv6.conf.${conf}.disable_ipv6`, 1);
    a.veth('va', '10.210.0.1/24', b, 'vb', '10.210.0.2/24', { staticNeighbours: true });
    exporter = await new RunningExporter(['--probes', 'netstack', '--netns', a.path, '--netns', b.path]).ready();
  });

  after(async function () {
    await exporter?.stop();
    await a?.destroy();
    await b?.destroy();
  });

  it('times the qdisc wait of exactly the packets a 100 kbit/s token bucket held back, and the other stages stay short', async function () {
    const N = 6;
    // a bucket of 1600 bytes: the first 1442-byte frame of a pair passes at
    // once, the second waits (1442 - 158) * 8 bits / 100 kbit/s = 103 ms,
    // within (67, 134] ms even if the sender is 35 ms late with it (an
    // emulated machine); 300 ms later the bucket is full again
    a.run('tc', 'qdisc', 'add', 'dev', 'va', 'root', 'tbf', 'rate', '100kbit', 'burst', '1600', 'limit', '100000');
    try {
      const receiver = await udp(b, { role: 'receive', host: '10.210.0.2', port: 9000 });
      const before = await exporter.scrape();
      const sender = await udp(a, { role: 'send', host: '10.210.0.2', port: 9000, size: 1400, bursts: N, burst: 2, gapMs: 300 });
      await sender.waitFor('done');
      while (receiver.all('datagram').length < 2 * N) await sleep(20);
      const m = await exporter.settle((x) => added(before, x, stage(a, 'tx', 'driver', 'va')).get('count') === 2 * N);
      receiver.child.stdin!.end();

      const qdisc = added(before, m, stage(a, 'tx', 'qdisc', 'va'));
      // the first of each pair leaves at once (within 8 ms even emulated),
      // the second after the bucket's 103 ms
      assert.deepEqual([qdisc.get(LE_8MS), qdisc.get(LE_67MS), qdisc.get(LE_134MS), qdisc.get('count')], [N, N, 2 * N, 2 * N]);
      const driver = added(before, m, stage(a, 'tx', 'driver', 'va'));
      assert.deepEqual([driver.get(LE_8MS), driver.get('count')], [2 * N, 2 * N]);
      const device = added(before, m, stage(b, 'rx', 'device_to_stack', 'vb'));
      assert.deepEqual([device.get(LE_8MS), device.get('count')], [2 * N, 2 * N]);
      // UDP: no TCP socket point between the stack and the read
      assert.equal(added(before, m, stage(b, 'rx', 'stack_to_socket', 'vb')).get('count'), 0);
      assert.equal(added(before, m, stage(b, 'rx', 'socket_to_read', 'vb')).get('count'), 0);
    } finally {
      a.run('tc', 'qdisc', 'del', 'dev', 'va', 'root');
    }
  });

  it('counts exactly the packets an nftables rule dropped as netfilter_drop, and forgets them', async function () {
    const M = 20_000;
    b.nft(`table inet bpfnet_drop {
      chain input { type filter hook input priority 0; udp dport 9100 counter drop; }
    }`);
    try {
      const labels = { reason: 'netfilter_drop', ifname: 'vb', netns: inode(b) };
      const before = await exporter.scrape();
      const tracked = [mapEntries('netstack_rx'), mapEntries('netstack_tx')];
      const sender = await udp(a, { role: 'send', host: '10.210.0.2', port: 9100, size: 100, bursts: 200, burst: M / 200, gapMs: 0 });
      await sender.waitFor('done', 120_000);
      await b.waitForPackets('inet bpfnet_drop', M);
      const m = await exporter.settle((x) => x.value('bpfnet_skb_drops_total', labels) - before.value('bpfnet_skb_drops_total', labels) === M);
      assert.equal(m.value('bpfnet_skb_drops_total', labels) - before.value('bpfnet_skb_drops_total', labels), M);
      assert.equal(b.nftPackets('inet bpfnet_drop'), M);
      // each dropped packet's entry went with it: 20,000 packets later the
      // packet-tracking maps hold no more than they held before
      const after = [mapEntries('netstack_rx'), mapEntries('netstack_tx')];
      assert.ok(after[0]! <= tracked[0]! && after[1]! <= tracked[1]!, `tracked packets ${tracked} before, ${after} after`);
      assert.equal(m.sum('bpfnet_netstack_map_full_total'), 0);
    } finally {
      b.run('nft', 'delete', 'table', 'inet', 'bpfnet_drop');
    }
  });

  it('counts resets sent and received exactly, as the kernel counts OutRsts', async function () {
    const before = await exporter.scrape();
    const rsts = () => a.tcpCounters().OutRsts + b.tcpCounters().OutRsts;
    const kernelBefore = rsts();
    // a closed port: b answers each SYN with a reset
    const refused = await runClient(a, { host: '10.210.0.2', port: 9, connections: Array(3).fill({ up: 1 }) });
    assert.deepEqual(
      refused.results.map((r) => r.error),
      ['ECONNREFUSED', 'ECONNREFUSED', 'ECONNREFUSED'],
    );
    // established connections that a aborts (SO_LINGER 0)
    const server = await startServer(b, { host: '10.210.0.2', port: 0, down: 0 });
    await runClient(a, { host: '10.210.0.2', port: server.port, connections: Array(2).fill({ up: 1000, ending: 'reset' }) });
    await server.stop();
    const resets = (m: Metrics, direction: string) =>
      m.value('bpfnet_tcp_resets_total', { family: 'ipv4', direction }) - before.value('bpfnet_tcp_resets_total', { family: 'ipv4', direction });
    const sent = TRACES_SOCKETLESS_RESETS ? 5 : 2;
    const m = await exporter.settle((x) => resets(x, 'tx') === sent && resets(x, 'rx') === 5);
    assert.deepEqual([resets(m, 'tx'), resets(m, 'rx'), rsts() - kernelBefore], [sent, 5, 5]);
  });

  it('counts retransmitted segments exactly as the kernel does, and follows TCP segments through every stage', async function () {
    const server = await startServer(b, { host: '10.210.0.2', port: 0, down: 100_000 });
    const retrans = () => a.tcpCounters().RetransSegs + b.tcpCounters().RetransSegs;
    const before = await exporter.scrape();
    const kernelBefore = retrans();
    // b drops what a sends for a while: a retransmits its SYN until the rule goes
    b.nft(`table inet bpfnet_rtx {
      chain input { type filter hook input priority 0; tcp dport ${server.port} counter drop; }
    }`);
    let client: AgentProcess;
    try {
      client = startClient(a, { host: '10.210.0.2', port: server.port, connections: [{ up: 200_000 }] });
      await b.waitForPackets('inet bpfnet_rtx', 2); // the SYN and its first retransmission
    } finally {
      b.run('nft', 'delete', 'table', 'inet', 'bpfnet_rtx');
    }
    await client.waitFor('done', 60_000);
    await server.stop();
    const kernel = retrans() - kernelBefore;
    const family = { family: 'ipv4' };
    const counted = (x: Metrics) =>
      x.value('bpfnet_tcp_retransmitted_segments_total', family) - before.value('bpfnet_tcp_retransmitted_segments_total', family);
    const m = await exporter.settle((x) => counted(x) === kernel);
    assert.ok(kernel >= 1, `the kernel retransmitted ${kernel} segments`);
    assert.equal(counted(m), kernel);
    // the segments went through each TCP stage on the pair; b answers
    // after a's FIN, when a is no longer established: its segments skip the
    // established socket's point (tcp_probe), stack_to_read has them
    for (const [ns, direction, name, ifname] of [
      [a, 'tx', 'send_to_qdisc', 'va'],
      [a, 'tx', 'qdisc', 'va'],
      [a, 'tx', 'driver', 'va'],
      [b, 'rx', 'device_to_stack', 'vb'],
      [b, 'rx', 'stack_to_socket', 'vb'],
      [b, 'rx', 'socket_to_read', 'vb'],
      [b, 'tx', 'send_to_qdisc', 'vb'],
      [a, 'rx', 'stack_to_read', 'va'],
    ] as const) {
      if (name === 'send_to_qdisc' && !HAS_SEND_STAGE) continue;
      assert.ok(added(before, m, stage(ns, direction, name, ifname)).get('count')! > 0, `${direction} ${name} on ${ifname}`);
    }
  });

  it('leaves no entries behind a transfer: none for acknowledgements, none for segments the receive queue merged', async function () {
    const server = await startServer(b, { host: '10.210.0.2', port: 0, down: 0 });
    const tracked = entriesIn('netstack_rx', inode(a));
    const trackedB = entriesIn('netstack_rx', inode(b));
    const segsBefore = a.tcpCounters().InSegs;
    await runClient(a, { host: '10.210.0.2', port: server.port, connections: [{ up: 4 << 20 }] });
    await server.stop();
    // a received only acknowledgements (and b's FIN): none has payload
    const acks = a.tcpCounters().InSegs - segsBefore;
    assert.ok(acks >= 20, `a received ${acks} segments`);
    const after = entriesIn('netstack_rx', inode(a));
    assert.ok(after <= tracked, `${tracked} packets of a's namespace tracked before, ${after} after ${acks} acknowledgements`);
    // b read every segment: those merged into another in its receive queue
    // (freed without a tracepoint) went with the one they were merged into
    const afterB = entriesIn('netstack_rx', inode(b));
    assert.ok(afterB <= trackedB, `${trackedB} packets of b's namespace tracked before, ${afterB} after 4 MB read`);
  });

  it('applies --netns, --port, --cgroup and --pid to what it counts', async function () {
    const resets = (m: Metrics, direction: string) => m.value('bpfnet_tcp_resets_total', { family: 'ipv4', direction });
    const filtered = async (args: string[], traffic: () => Promise<void>, want: { tx: number; rx: number }) => {
      const e = await new RunningExporter(['--probes', 'netstack', ...args]).ready();
      try {
        await traffic();
        // the kernel has counted its own (OutRsts) by the time the clients are done
        const m = await e.settle((x) => resets(x, 'tx') === want.tx && resets(x, 'rx') === want.rx, 3000);
        assert.deepEqual({ tx: resets(m, 'tx'), rx: resets(m, 'rx') }, want, args.join(' '));
      } finally {
        await e.stop();
      }
    };
    const refused = (from: Netns, host: string, port: number, n: number) => runClient(from, { host, port, connections: Array(n).fill({ up: 1 }) });

    // a's sockets to port 9 receive resets; the answers b sends have no socket
    // (no port to judge), and b's own connections are in another namespace
    await filtered(
      ['--netns', a.path, '--port', '9'],
      async () => {
        await refused(a, '10.210.0.2', 9, 2);
        await refused(a, '10.210.0.2', 10, 3);
        await refused(b, '10.210.0.1', 9, 1);
      },
      { tx: 0, rx: 2 },
    );

    const server = await startServer(b, { host: '10.210.0.2', port: 0, down: 0 });
    const abort = (cgroup?: TestCgroup) => runClient(a, { host: '10.210.0.2', port: server.port, connections: [{ up: 100, ending: 'reset' }] }, cgroup);
    const cg = new TestCgroup('netstack');
    try {
      // the aborting socket of the client in the cgroup; b's server sockets
      // that receive the resets are not in it
      await filtered(
        ['--cgroup', cg.path],
        async () => {
          await abort(cg);
          await abort();
        },
        { tx: 1, rx: 0 },
      );

      // a socket the listed process sent on (where the kernel traces sends)
      const listed = startClient(a, { host: '10.210.0.2', port: server.port, waitForGo: true, connections: [{ up: 100, ending: 'reset' }] });
      const pid = (await listed.waitFor('started')).pid as number;
      await filtered(
        ['--pid', String(pid)],
        async () => {
          listed.go();
          await listed.waitFor('done');
          await abort();
        },
        { tx: HAS_SEND_STAGE ? 1 : 0, rx: 0 },
      );
    } finally {
      await server.stop();
      await cg.destroy();
    }
  });

  it('forgets the series of an interface that has been idle for --netstack-series-ttl', async function () {
    const e = await new RunningExporter(['--probes', 'netstack', '--netns', a.path, '--netstack-series-ttl', '1']).ready();
    try {
      // a third namespace's veth, a pod that comes and goes
      const pod = createNetns('netstack-pod');
      try {
        for (const conf of ['all', 'default']) pod.sysctl(`net.ipv6.conf.${conf}.disable_ipv6`, 1);
        a.veth('vpod', '10.211.0.1/24', pod, 'eth0', '10.211.0.2/24', { staticNeighbours: true });
        const receiver = await udp(pod, { role: 'receive', host: '10.211.0.2', port: 9200 });
        const sender = await udp(a, { role: 'send', host: '10.211.0.2', port: 9200, size: 100, bursts: 1, burst: 3, gapMs: 0 });
        await sender.waitFor('done');
        while (receiver.all('datagram').length < 3) await sleep(20);
        const seen = await e.settle((x) => x.value(`${LATENCY}_count`, stage(a, 'tx', 'driver', 'vpod')) === 3);
        assert.equal(seen.value(`${LATENCY}_count`, stage(a, 'tx', 'driver', 'vpod')), 3);
      } finally {
        await pod.destroy();
      }
      // swept every half ttl: gone within two seconds of the last packet
      await sleep(2500);
      const m = await e.scrape();
      assert.equal(m.find(`${LATENCY}_count`, { ifname: 'vpod' }).length, 0);
      assert.ok(m.find('bpfnet_probe_up', { probe: 'netstack' })[0]?.value === 1);
    } finally {
      await e.stop();
    }
  });
});
