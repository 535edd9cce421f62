// SPDX-License-Identifier: Apache-2.0
// The real exporter's HTTP server under the load that starved it: more idle
// connections than it may open files, and requests that stall. Scrapes keep
// being answered, its sockets stay within --http-connection-limit, the log
// says when the limit is reached, and stalled requests are closed.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import { RunningExporter, sleep } from '../helpers/exporter';
import { requireRoot } from '../helpers/privileges';

/** Opens a connection; sends `send` once connected. Records what comes back. */
function connect(port: number, send?: string): Promise<{ socket: net.Socket; received: () => string; closed: Promise<void> }> {
  return new Promise((resolve, reject) => {
    let data = '';
    const socket = net.connect(port, '127.0.0.1');
    socket.setEncoding('utf8');
    socket.on('data', (d: string) => (data += d));
    const closed = new Promise<void>((r) => socket.once('close', () => r()));
    socket.once('error', reject);
    socket.once('connect', () => {
      socket.removeListener('error', reject);
      socket.on('error', () => {}); // closed by the exporter: a reset is a close too
      if (send) socket.write(send);
      resolve({ socket, received: () => data, closed });
    });
  });
}

function socketFds(pid: number): number {
  return fs.readdirSync(`/proc/${pid}/fd`).filter((fd) => {
    try {
      return fs.readlinkSync(`/proc/${pid}/fd/${fd}`).startsWith('socket:');
    } catch {
      return false; // closed meanwhile
    }
  }).length;
}

describe('metrics server', function () {
  before(function () {
    requireRoot();
  });

  it('answers scrapes with twice as many connections open against it as it may open files, and says the limit was reached', async function () {
    this.timeout(120_000);
    const fileLimit = 1024;
    const limit = 64;
    const exporter = await new RunningExporter(['--probes', 'connect', '--http-connection-limit', String(limit)], {}, [
      'prlimit',
      `--nofile=${fileLimit}`,
      '--',
    ]).ready();
    const port = Number(new URL(await exporter.url).port);
    const before = socketFds(exporter.pid);
    const open: Awaited<ReturnType<typeof connect>>[] = [];
    let scrapes = 0;
    try {
      // half send nothing, half ask for /healthz once and then stay as idle
      // keep-alive connections; a scrape between each batch
      for (let batch = 0; batch < 2 * fileLimit; batch += 128) {
        const conns = await Promise.all(
          Array.from({ length: 128 }, (_, i) => connect(port, (batch + i) % 2 ? 'GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n' : undefined)),
        );
        open.push(...conns);
        const m = await exporter.scrape();
        assert.equal(m.value('bpfnet_probe_up', { probe: 'connect' }), 1);
        scrapes++;
        // a new connection is accepted before the idlest one is closed: one more at most
        assert.ok(socketFds(exporter.pid) <= before + limit + 1, `${socketFds(exporter.pid)} sockets open, ${before} before the connections`);
      }
      assert.equal(open.length, 2 * fileLimit);
      assert.equal(scrapes, 16);
      // the last closes may still be on their way to this end
      const closedByExporter = () => open.filter((c) => c.socket.destroyed || c.socket.readableEnded).length;
      for (let i = 0; i < 50 && closedByExporter() < open.length - limit; i++) await sleep(100);
      assert.ok(closedByExporter() >= open.length - limit, `the exporter closed ${closedByExporter()} of ${open.length}`);
      assert.match(
        exporter.stderr,
        /level=warn component=http msg="HTTP connections at their limit: each new one closes the connection idle the longest \(see --http-connection-limit\)" limit=64\n/,
      );
      assert.equal(exporter.stderr.match(/HTTP connections at their limit/g)?.length, 1, 'the limit is logged once, not per connection');
    } finally {
      for (const c of open) c.socket.destroy();
      await exporter.stop();
    }
  });

  it('closes a connection that sends nothing, half a request, or a request body that does not arrive', async function () {
    // the header timeout is 5 s and the request timeout 10 s, checked every
    // second: the test allows three times that
    this.timeout(45_000);
    const exporter = await new RunningExporter(['--probes', 'connect']).ready();
    const port = Number(new URL(await exporter.url).port);
    try {
      const silent = await connect(port);
      const half = await connect(port, 'GET /metrics HTTP/1.1\r\nHost: x\r\n');
      const body = await connect(port, 'POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nab');
      await Promise.all([silent.closed, half.closed, body.closed]);
      assert.match(silent.received(), /^HTTP\/1\.1 408 /);
      assert.match(half.received(), /^HTTP\/1\.1 408 /);
      assert.match(body.received(), /^HTTP\/1\.1 405 /);
      assert.equal((await exporter.scrape()).value('bpfnet_probe_up', { probe: 'connect' }), 1);
    } finally {
      await exporter.stop();
    }
  });
});
