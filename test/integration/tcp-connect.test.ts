// SPDX-License-Identifier: Apache-2.0
// The connect probe against the real kernel: connections made in a namespace
// of the test's own, counted by outcome and compared with the kernel's counters.
import assert from 'node:assert/strict';
import { runClient, startClient, startServer } from '../helpers/agent';
import { RunningExporter } from '../helpers/exporter';
import { createNetns, type Netns } from '../helpers/netns';
import { requireRoot } from '../helpers/privileges';

/** Connects by family and outcome, over every workload and peer port. */
function connects(m: import('../helpers/prom-text').Metrics): Record<string, number> {
  const out: Record<string, number> = {};
  for (const s of m.find('bpfnet_tcp_connects_total'))
    out[`${s.labels.family}/${s.labels.result}`] = (out[`${s.labels.family}/${s.labels.result}`] ?? 0) + s.value;
  return out;
}

describe('connect probe', function () {
  let ns: Netns;
  let exporter: RunningExporter;

  before(async function () {
    requireRoot();
    ns = createNetns('connect');
    exporter = await new RunningExporter(['--probes', 'connect', '--netns', ns.path]).ready();
  });

  after(async function () {
    await exporter?.stop();
    await ns?.destroy();
  });

  it('counts every outcome exactly, for IPv4 and IPv6, as the kernel counts active opens', async function () {
    this.timeout(60_000);
    ns.sysctl('net.ipv4.tcp_syn_retries', 1); // a connect times out after 1 + 2 s
    // SYNs to port 9 vanish: connects there time out, or are aborted first
    ns.nft(`table inet blackhole {
      chain input { type filter hook input priority 0; tcp dport 9 tcp flags syn drop; }
    }`);
    const v4 = await startServer(ns, { host: '127.0.0.1', port: 0, down: 10 });
    const v6 = await startServer(ns, { host: '::1', port: 0, down: 10 });

    await Promise.all([
      runClient(ns, { host: '127.0.0.1', port: v4.port, connections: Array(5).fill({ up: 100 }) }),
      runClient(ns, { host: '::1', port: v6.port, connections: Array(3).fill({ up: 100 }) }),
      runClient(ns, { host: '127.0.0.1', port: 1, connections: Array(4).fill({ up: 1 }) }),
      runClient(ns, { host: '::1', port: 1, connections: Array(2).fill({ up: 1 }) }),
      runClient(ns, { host: '127.0.0.1', port: 9, connections: [{ up: 1 }] }),
      runClient(ns, { host: '::1', port: 9, connections: [{ up: 1 }, { up: 1 }] }),
      runClient(ns, { host: '127.0.0.1', port: 9, abortAfterMs: 200, connections: Array(3).fill({ up: 1, ending: 'abort' }) }),
      runClient(ns, { host: '::1', port: 9, abortAfterMs: 200, connections: [{ up: 1, ending: 'abort' }] }),
    ]);

    const m = await exporter.scrape();
    assert.deepEqual(connects(m), {
      'ipv4/established': 5,
      'ipv4/refused': 4,
      'ipv4/timeout': 1,
      'ipv4/aborted': 3,
      'ipv6/established': 3,
      'ipv6/refused': 2,
      'ipv6/timeout': 2,
      'ipv6/aborted': 1,
    });
    assert.equal(m.value('bpfnet_tcp_connect_duration_seconds_count', { family: 'ipv4' }), 5);
    assert.equal(m.value('bpfnet_tcp_connect_duration_seconds_count', { family: 'ipv6' }), 3);

    // the kernel: every SYN_SENT is an active open; refusals and timeouts end
    // in tcp_done() and count as failed attempts, an application's close does not
    const kernel = ns.tcpCounters();
    assert.equal(kernel.ActiveOpens, 5 + 4 + 1 + 3 + 3 + 2 + 2 + 1);
    assert.equal(kernel.AttemptFails, 4 + 1 + 2 + 2);
    await v4.stop();
    await v6.stop();
  });

  it('times a connect whose first SYN was lost in the bucket of the retransmission', async function () {
    this.timeout(30_000);
    const srv = await startServer(ns, { host: '127.0.0.1', port: 0, down: 1 });
    ns.nft(`table ip lose {
      chain input { type filter hook input priority 0; tcp dport ${srv.port} tcp flags syn counter drop; }
    }`);
    const before = (await exporter.scrape()).buckets('bpfnet_tcp_connect_duration_seconds', { family: 'ipv4' });
    const client = startClient(ns, { host: '127.0.0.1', port: srv.port, connections: [{ up: 1 }] });
    await ns.waitForPackets('ip lose', 1);
    ns.nft('delete table ip lose'); // the retransmitted SYN, 1 s after the first, passes
    await client.waitFor('done');
    const after = (await exporter.scrape()).buckets('bpfnet_tcp_connect_duration_seconds', { family: 'ipv4' });
    const added = (le: string) => after.get(le)! - before.get(le)!;
    // 1 s plus a little: above 2^29 ns, at most 2^30 ns
    assert.equal(added('0.536870912'), 0);
    assert.equal(added('1.073741824'), 1);
    assert.equal(added('+Inf'), 1);
    await srv.stop();
  });
});
