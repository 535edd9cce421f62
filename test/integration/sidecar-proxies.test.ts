// SPDX-License-Identifier: Apache-2.0
// Sidecar timing with the proxies users run, from Debian: nginx (two
// workers, stream proxy), haproxy in mode tcp with four threads (a thread
// accepts, another may take the connection and connect upstream before it
// reads) and in mode http reusing its upstream connection, socat with a
// child process per connection, and the test's own proxy whose thread per
// connection connects upstream before it reads. Each forwards 20
// connections to an application: reached directly, and as a pod's sidecar
// is, from a client in another namespace whose connections to the pod's
// port an nftables REDIRECT sends to the proxy, which forwards them to that
// port on loopback. For each, every inbound connection the proxy accepted
// is timed, reused or counted unpaired, exactly, and none is unpaired: each
// of these models is one the kernel follows. A proxy whose threads take
// connections through a pipe is followed only by the destination NAT
// took a connection from: directly, its connections are all counted
// unpaired. Clients of another host, whose connects the exporter never
// sees (here: the client's source address translated on its way), are
// paired by the original destination a proxy asks netfilter for
// (getsockopt SO_ORIGINAL_DST): HAProxy does for an ACL on it, Envoy for
// its original_dst listener filter (the test proxy's -o).
import assert from 'node:assert/strict';
import { execFileSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { runClient, startServer, type Server } from '../helpers/agent';
import { RunningExporter } from '../helpers/exporter';
import { createNetns, type Netns } from '../helpers/netns';
import { OtlpReceiver } from '../helpers/otlp-receiver';
import { requireRoot } from '../helpers/privileges';
import type { Metrics } from '../helpers/prom-text';
import { assertSidecarTraces, buildSidecarProxy, startSidecarProxy } from '../helpers/sidecar-proxy';

const N = 20;
/** the pod's port: the application's on loopback, the proxy's for the pod's address (REDIRECT) */
const POD_PORT = 8080;
const POD_ADDRESS = '10.99.0.2';
/** the client namespace's connections to the pod leave from this address: another host's, to the exporter */
const REMOTE_ADDRESS = '10.99.0.5';
const DELAY_MS = 40; // the test proxy's wait before its connect: in (2^25, 2^26] ns
const LE_33MS = '0.033554432';
const LE_67MS = '0.067108864';
const LE_134MS = '0.134217728';
/** set by the older kernels' run, under emulation */
const COUNTS_ONLY = process.env.SIDECAR_TEST_COUNTS_ONLY === '1';

interface Proxy {
  port: number;
  stop(): Promise<void>;
}

/** Waits until something inside ns listens on 127.0.0.1:port. */
async function listening(ns: Netns, port: number, child: ChildProcess, what: string): Promise<void> {
  for (let i = 0; i < 100; i++) {
    if (child.exitCode !== null) throw new Error(`${what} exited ${child.exitCode}`);
    if (ns.run('ss', '-Htln', `sport = :${port}`).trim()) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`${what} does not listen on ${port}`);
}

/** Stops a proxy as its service manager would (SIGTERM: nginx's master
 * then ends its workers), killing it if it takes more than 5 s. */
function stopper(child: ChildProcess): () => Promise<void> {
  return () =>
    new Promise((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) return resolve();
      const kill = setTimeout(() => child.kill('SIGKILL'), 5000);
      child.once('exit', () => {
        clearTimeout(kill);
        resolve();
      });
      child.kill('SIGTERM');
    });
}

let nextPort = 15001;

async function start(ns: Netns, what: string, cmd: string, args: string[], port: number): Promise<Proxy> {
  const child = ns.spawn(cmd, args);
  let stderr = '';
  child.stderr!.on('data', (d) => (stderr += d));
  try {
    await listening(ns, port, child, what);
  } catch (err) {
    throw new Error(`${(err as Error).message}: ${stderr}`, { cause: err });
  }
  return { port, stop: stopper(child) };
}

function nginx(ns: Netns, dir: string, upstream: number): Promise<Proxy> {
  const port = nextPort++;
  const conf = path.join(dir, `nginx-${port}.conf`);
  fs.writeFileSync(
    conf,
    `load_module /usr/lib/nginx/modules/ngx_stream_module.so;
daemon off;
master_process on;
worker_processes 2;
pid ${dir}/nginx-${port}.pid;
error_log stderr warn;
events {}
stream {
  server {
    listen ${port};
    proxy_pass 127.0.0.1:${upstream};
    proxy_half_close on;
  }
}
`,
  );
  return start(ns, 'nginx', 'nginx', ['-c', conf, '-e', 'stderr'], port);
}

/** frontendRules: more lines of the frontend */
function haproxy(ns: Netns, dir: string, upstream: number, mode: 'tcp' | 'http', frontendRules = ''): Promise<Proxy> {
  const port = nextPort++;
  const conf = path.join(dir, `haproxy-${port}.cfg`);
  fs.writeFileSync(
    conf,
    `global
  nbthread 4
defaults
  mode ${mode}
  timeout connect 5s
  timeout client 30s
  timeout server 30s
${mode === 'http' ? '  http-reuse always\n' : ''}frontend fe
  bind :${port}
${frontendRules}  default_backend be
backend be
  server app 127.0.0.1:${upstream}
`,
  );
  return start(ns, `haproxy (${mode})`, 'haproxy', ['-db', '-f', conf], port);
}

function socat(ns: Netns, upstream: number): Promise<Proxy> {
  const port = nextPort++;
  return start(ns, 'socat', 'socat', ['-t', '5', `TCP-LISTEN:${port},fork,reuseaddr,backlog=64`, `TCP:127.0.0.1:${upstream}`], port);
}

/** An HTTP application answering every request with 300 bytes, keeping connections open. */
async function httpApp(ns: Netns): Promise<Proxy> {
  const port = nextPort++;
  const script = `require('http').createServer((q, s) => s.end('x'.repeat(300))).listen(${port}, '127.0.0.1')`;
  return start(ns, 'the HTTP application', process.execPath, ['-e', script], port);
}

describe('sidecar timing with real proxies', function () {
  let ns: Netns;
  let client: Netns;
  let exporter: RunningExporter;
  let dir: string;
  let app: Server;
  let podApp: Server;

  before(async function () {
    requireRoot();
    for (const tool of ['nginx', 'haproxy', 'socat', 'nft', 'curl']) execFileSync('sh', ['-c', `command -v ${tool}`]);
    buildSidecarProxy();
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bpfnet-proxies-'));
    ns = createNetns('proxies');
    client = createNetns('proxy-client');
    client.veth('cl0', '10.99.0.1/24', ns, 'pod0', `${POD_ADDRESS}/24`);
    client.run('ip', 'addr', 'add', `${REMOTE_ADDRESS}/24`, 'dev', 'cl0');
    exporter = await new RunningExporter(['--netns', ns.path, '--sidecar-comm', 'nginx,haproxy,socat,sidecar-proxy']).ready();
    app = await startServer(ns, { host: '127.0.0.1', port: 0, down: 300 });
    podApp = await startServer(ns, { host: '127.0.0.1', port: POD_PORT, down: 300 });
  });

  after(async function () {
    await app?.stop();
    await podApp?.stop();
    await exporter?.stop();
    await client?.destroy();
    await ns?.destroy();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  /** What a proxy's sidecar counted since before: accepted (by the accept probe), timed, reused, unpaired. */
  function counted(before: Metrics, m: Metrics, comm: string) {
    const sidecar = { sidecar: comm };
    const d = (name: string, labels: Record<string, string>) => m.sum(name, labels) - before.sum(name, labels);
    const buckets = (le: string) =>
      (m.buckets('bpfnet_sidecar_forward_seconds', sidecar).get(le) ?? 0) - (before.buckets('bpfnet_sidecar_forward_seconds', sidecar).get(le) ?? 0);
    return {
      accepted: d('bpfnet_tcp_accepts_total', { comm }),
      timed: d('bpfnet_sidecar_forward_seconds_count', sidecar),
      reused: d('bpfnet_sidecar_reused_connections_total', sidecar),
      unpaired: d('bpfnet_sidecar_unpaired_connections_total', sidecar),
      [LE_33MS]: buckets(LE_33MS),
      [LE_67MS]: buckets(LE_67MS),
      [LE_134MS]: buckets(LE_134MS),
    };
  }

  /** N connections to the proxy's port, or from the client namespace to
   * the pod's port, which a REDIRECT sends to the proxy; each gets the
   * application's 300 bytes. */
  async function traffic(port: number, redirected: boolean, remote = false, parallel = false): Promise<void> {
    if (remote) {
      client.nft(`table ip bpfnet_remote {
  chain postrouting {
    type nat hook postrouting priority 100;
    ip daddr ${POD_ADDRESS} tcp dport ${POD_PORT} snat to ${REMOTE_ADDRESS}
  }
}`);
    }
    if (redirected) {
      ns.nft(`table ip bpfnet_sidecar {
  chain prerouting {
    type nat hook prerouting priority -100;
    iifname "pod0" tcp dport ${POD_PORT} redirect to :${port}
  }
}`);
    }
    try {
      const { results } = redirected
        ? await runClient(client, { host: POD_ADDRESS, port: POD_PORT, connections: Array(N).fill({ up: 100 }), parallel })
        : await runClient(ns, { host: '127.0.0.1', port, connections: Array(N).fill({ up: 100 }), parallel });
      assert.deepEqual(
        results.map((r) => r.received),
        Array(N).fill(300),
      );
    } finally {
      if (redirected) ns.run('nft', 'delete', 'table', 'ip', 'bpfnet_sidecar');
      if (remote) client.run('nft', 'delete', 'table', 'ip', 'bpfnet_remote');
    }
  }

  /** Starts a proxy, sends its traffic, and returns what its sidecar
   * counted once every connection it accepted is accounted for. */
  async function proxied(
    start: () => Promise<Proxy>,
    comm: string,
    how: { redirected: boolean; remote?: boolean; parallel?: boolean },
  ): Promise<ReturnType<typeof counted>> {
    const proxy = await start();
    try {
      const before = await exporter.scrape();
      await traffic(proxy.port, how.redirected, how.remote, how.parallel);
      const m = await exporter.settle((x) => {
        const c = counted(before, x, comm);
        return c.accepted === N && c.timed + c.reused + c.unpaired === N;
      });
      return counted(before, m, comm);
    } finally {
      await proxy.stop();
    }
  }
  const counts = (c: ReturnType<typeof counted>) => ({ accepted: c.accepted, timed: c.timed, reused: c.reused, unpaired: c.unpaired });
  /** all N timed, or all N unpaired */
  const every = (timed: boolean) => ({ accepted: N, timed: timed ? N : 0, reused: 0, unpaired: timed ? 0 : N });

  const ownProxy =
    (mode: 'connect-first' | 'pool', originalDst = false) =>
    (up: number): Promise<Proxy> =>
      startSidecarProxy(ns, { mode, delayMs: DELAY_MS, upstreamPort: up, originalDst }).then((p) => ({ port: p.port, stop: async () => p.stop() }));
  /** each proxy; followed: whether the kernel follows it without NAT's help */
  const models: { name: string; comm: string; start: (upstream: number) => Promise<Proxy>; bucket: string; followed: boolean }[] = [
    { name: 'nginx with two workers', comm: 'nginx', start: (up) => nginx(ns, dir, up), bucket: LE_134MS, followed: true },
    { name: 'haproxy in mode tcp with four threads', comm: 'haproxy', start: (up) => haproxy(ns, dir, up, 'tcp'), bucket: LE_134MS, followed: true },
    { name: 'socat with a child per connection', comm: 'socat', start: (up) => socat(ns, up), bucket: LE_134MS, followed: true },
    { name: 'a thread per connection that connects before it reads', comm: 'sidecar-proxy', start: ownProxy('connect-first'), bucket: LE_67MS, followed: true },
    { name: 'threads started beforehand, given connections through a pipe', comm: 'sidecar-proxy', start: ownProxy('pool'), bucket: LE_67MS, followed: false },
  ];

  for (const redirected of [false, true]) {
    for (const model of models) {
      const timed = redirected || model.followed;
      it(`${timed ? 'times every connection' : 'counts every connection unpaired'} of ${model.name}${redirected ? ', as a sidecar behind a REDIRECT' : ''}`, async function () {
        const c = await proxied(() => model.start(redirected ? POD_PORT : app.port), model.comm, { redirected });
        assert.deepEqual(counts(c), every(timed));
        // the forward took the proxy's own time: the test proxy's wait, in
        // its bucket; the others' next to nothing (not where emulation
        // stretches time: test/integration/older-kernels.test.ts)
        if (!timed || COUNTS_ONLY) return;
        if (model.bucket === LE_67MS) assert.deepEqual([c[LE_33MS], c[LE_67MS]], [0, N]);
        else assert.equal(c[LE_134MS], N);
      });
    }
  }

  // all N at once. Behind a REDIRECT each connection is paired by the
  // destination NAT took it from, whatever the proxy's threads do with it;
  // except the pool's: connects take NAT's connections in the order they
  // came, and a worker whose wait ends before an earlier one's serves and
  // closes its connection while it is still queued. Directly, threads that
  // serve several connections at once can take up one another's. Where
  // the pairing is not certain, the sum is exact (and none reused)
  for (const redirected of [false, true]) {
    for (const model of models) {
      const timed = redirected || model.followed;
      const certain = redirected ? model.followed : !model.followed;
      const what = !certain ? 'counts, timed or unpaired,' : timed ? 'times' : 'counts unpaired';
      it(`${what} every connection of ${model.name} when ${N} arrive at once${redirected ? ' behind a REDIRECT' : ''}`, async function () {
        const c = await proxied(() => model.start(redirected ? POD_PORT : app.port), model.comm, { redirected, parallel: true });
        if (certain) assert.deepEqual(counts(c), every(timed));
        else assert.deepEqual({ accepted: c.accepted, reused: c.reused, sum: c.timed + c.unpaired }, { accepted: N, reused: 0, sum: N });
      });
    }
  }

  /** clients of another host, behind a REDIRECT: which proxies are timed */
  const remoteModels: { name: string; comm: string; start: () => Promise<Proxy>; timed: boolean }[] = [
    { name: 'threads started beforehand, given connections through a pipe', comm: 'sidecar-proxy', start: () => ownProxy('pool')(POD_PORT), timed: false },
    {
      name: "threads started beforehand that ask each connection's original destination",
      comm: 'sidecar-proxy',
      start: () => ownProxy('pool', true)(POD_PORT),
      timed: true,
    },
    {
      name: 'haproxy in mode tcp with four threads, which asks it for an ACL',
      comm: 'haproxy',
      // refused unless haproxy learned the port the client asked for
      start: () => haproxy(ns, dir, POD_PORT, 'tcp', `  tcp-request connection reject unless { dst_port ${POD_PORT} }\n`),
      timed: true,
    },
  ];
  for (const model of remoteModels) {
    it(`${model.timed ? 'times' : 'counts unpaired'} every connection of a client of another host, to ${model.name}, as a sidecar behind a REDIRECT`, async function () {
      const c = await proxied(model.start, model.comm, { redirected: true, remote: true });
      assert.deepEqual(counts(c), every(model.timed));
      if (model.timed && model.comm === 'sidecar-proxy' && !COUNTS_ONLY) assert.deepEqual([c[LE_33MS], c[LE_67MS]], [0, N]);
    });
  }

  describe('spans', function () {
    let receiver: OtlpReceiver;
    let traced: RunningExporter;

    before(async function () {
      receiver = await new OtlpReceiver().start();
      // another exporter, with spans (the one above runs without: the
      // kernel then numbers a sidecar's connections only)
      traced = await new RunningExporter(['--netns', ns.path, '--sidecar-comm', 'nginx,haproxy,socat,sidecar-proxy', '--otlp-endpoint', receiver.endpoint], {
        OTEL_BSP_SCHEDULE_DELAY: '100',
      }).ready();
    });

    after(async function () {
      await traced?.stop();
      await receiver?.stop();
    });

    // each model where the kernel follows it: directly, or behind a REDIRECT
    for (const model of models) {
      it(`makes each inbound span of ${model.name} the parent of its upstream span and of the application's${model.followed ? '' : ', behind a REDIRECT'}`, async function () {
        const redirected = !model.followed;
        const proxy = await model.start(redirected ? POD_PORT : app.port);
        try {
          const spansBefore = receiver.spans.length;
          await traffic(proxy.port, redirected);
          // per connection: the proxy's two, the application's, and the
          // client's when it is in the namespace the exporter watches
          const each = redirected ? 3 : 4;
          const spans = (await receiver.waitFor((x) => x.length >= spansBefore + each * N)).slice(spansBefore);
          assertSidecarTraces(spans, proxy.port, model.comm, N);
          assert.deepEqual(receiver.errors, []);
        } finally {
          await proxy.stop();
        }
      });
    }
  });

  it('counts the connections haproxy in mode http forwards over a reused upstream connection, and times the ones it opened', async function () {
    const http = await httpApp(ns);
    const proxy = await haproxy(ns, dir, http.port, 'http');
    try {
      const before = await exporter.scrape();
      for (let i = 0; i < N; i++) {
        const body = ns.run('curl', '-sf', '-H', 'Connection: close', `http://127.0.0.1:${proxy.port}/`);
        assert.equal(body.length, 300);
      }
      const node = path.basename(process.execPath).slice(0, 15);
      const m = await exporter.settle((x) => {
        const c = counted(before, x, 'haproxy');
        return c.accepted === N && c.timed + c.reused + c.unpaired === N;
      });
      const c = counted(before, m, 'haproxy');
      // each upstream connection haproxy opened is one the application accepted
      const opened =
        m.sum('bpfnet_tcp_accepts_total', { comm: node, port: String(http.port) }) -
        before.sum('bpfnet_tcp_accepts_total', { comm: node, port: String(http.port) });
      assert.ok(opened >= 1 && opened < N, `haproxy reused its upstream connections: it opened ${opened}`);
      assert.deepEqual(
        { accepted: c.accepted, timed: c.timed, reused: c.reused, unpaired: c.unpaired },
        { accepted: N, timed: opened, reused: N - opened, unpaired: 0 },
      );
    } finally {
      await proxy.stop();
      await http.stop();
    }
  });
});
