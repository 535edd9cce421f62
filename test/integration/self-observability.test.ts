// SPDX-License-Identifier: Apache-2.0
// What the exporter says about itself: bpfnet_build_info names the build and
// what it runs on, prom-client's process_* and nodejs_* metrics agree with
// what the kernel says about the process (/proc), and --log-format json
// makes every line of a real run, debug level included, one JSON object.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { runClient, startServer } from '../helpers/agent';
import { RunningExporter } from '../helpers/exporter';
import { createNetns, type Netns } from '../helpers/netns';
import { OtlpReceiver } from '../helpers/otlp-receiver';
import { requireRoot } from '../helpers/privileges';
import { parseMetrics } from '../helpers/prom-text';
import { SUMS_NAMED_AS_COUNTERS } from '../../src/metrics/exporter';

const ROOT = path.resolve(__dirname, '..', '..', '..', '..');

/** GET on the given agent (one kept-alive connection), the body. */
function get(url: string, agent: http.Agent): Promise<string> {
  return new Promise((resolve, reject) => {
    http
      .get(url, { agent }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d) => (body += d));
        res.on('end', () => resolve(body));
      })
      .on('error', reject);
  });
}

/** Open file descriptors of a process, as /proc lists them. */
const openFds = (pid: number) => fs.readdirSync(`/proc/${pid}/fd`).length;

/** When a process started, in seconds since the epoch: its start in clock
 * ticks after boot (/proc/PID/stat, field 22) plus the boot time (/proc/stat
 * btime, whole seconds). */
function startTime(pid: number): number {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' '); // after "pid (comm) "
  const ticks = Number(fields[22 - 3]);
  const btime = Number(/^btime (\d+)$/m.exec(fs.readFileSync('/proc/stat', 'utf8'))![1]);
  const hz = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }));
  return btime + ticks / hz;
}

const vmRss = (pid: number) => Number(/^VmRSS:\s+(\d+) kB$/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) * 1024;

describe('self-observability', function () {
  let exporter: RunningExporter;

  before(async function () {
    requireRoot();
    exporter = await new RunningExporter(['--probes', 'netstack']).ready();
  });

  after(async function () {
    await exporter?.stop();
  });

  it("names the build in bpfnet_build_info: package.json's version, the checkout's commit, Node.js, the system libbpf and the kernel", async function () {
    const m = await exporter.scrape();
    const info = m.find('bpfnet_build_info');
    assert.equal(info.length, 1);
    const version = (JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;
    const head = execFileSync('git', ['rev-parse', 'HEAD'], { cwd: ROOT, encoding: 'utf8' }).trim();
    // "1:1.1.2-0+deb12u1": the upstream version after the epoch
    const pkg = execFileSync('dpkg-query', ['-W', '-f', '${Version}', 'libbpf1'], { encoding: 'utf8' }).replace(/^\d+:/, '');
    const libbpf = info[0]!.labels.libbpf_version!;
    assert.match(libbpf, /^\d+\.\d+$/);
    assert.ok(pkg.startsWith(`${libbpf}.`), `libbpf ${libbpf} is the package's ${pkg}`);
    assert.deepEqual(info[0]!.labels, {
      version,
      revision: head,
      nodejs_version: process.versions.node,
      libbpf_version: libbpf,
      kernel_version: execFileSync('uname', ['-r'], { encoding: 'utf8' }).trim(),
    });
    assert.equal(info[0]!.value, 1);
  });

  it('serves the standard process and Node.js metrics, unprefixed, and no gauge named like a counter', async function () {
    const { body } = await exporter.metricsText();
    const families = [...body.matchAll(/^# TYPE (\S+) (\S+)$/gm)].map((x): [string, string] => [x[1]!, x[2]!]).filter(([n]) => /^(process|nodejs)_/.test(n));
    assert.deepEqual(
      new Map(families),
      new Map([
        ['process_cpu_user_seconds_total', 'counter'],
        ['process_cpu_system_seconds_total', 'counter'],
        ['process_cpu_seconds_total', 'counter'],
        ['process_start_time_seconds', 'gauge'],
        ['process_resident_memory_bytes', 'gauge'],
        ['process_virtual_memory_bytes', 'gauge'],
        ['process_heap_bytes', 'gauge'],
        ['process_open_fds', 'gauge'],
        ['process_max_fds', 'gauge'],
        ['nodejs_eventloop_lag_seconds', 'gauge'],
        ['nodejs_eventloop_lag_min_seconds', 'gauge'],
        ['nodejs_eventloop_lag_max_seconds', 'gauge'],
        ['nodejs_eventloop_lag_mean_seconds', 'gauge'],
        ['nodejs_eventloop_lag_stddev_seconds', 'gauge'],
        ['nodejs_eventloop_lag_p50_seconds', 'gauge'],
        ['nodejs_eventloop_lag_p90_seconds', 'gauge'],
        ['nodejs_eventloop_lag_p99_seconds', 'gauge'],
        ['nodejs_active_resources', 'gauge'],
        ['nodejs_active_handles', 'gauge'],
        ['nodejs_active_requests', 'gauge'],
        ['nodejs_heap_size_total_bytes', 'gauge'],
        ['nodejs_heap_size_used_bytes', 'gauge'],
        ['nodejs_external_memory_bytes', 'gauge'],
        ['nodejs_heap_space_size_total_bytes', 'gauge'],
        ['nodejs_heap_space_size_used_bytes', 'gauge'],
        ['nodejs_heap_space_size_available_bytes', 'gauge'],
        ['nodejs_version_info', 'gauge'],
        ['nodejs_gc_duration_seconds', 'histogram'],
      ]),
    );
    for (const name of SUMS_NAMED_AS_COUNTERS) assert.doesNotMatch(body, new RegExp(`^${name}`, 'm'));
    const m = parseMetrics(body);
    assert.equal(m.find('nodejs_version_info')[0]!.labels.version, `v${process.versions.node}`);
    assert.equal(m.value('process_max_fds'), Number(/^Max open files\s+(\d+)/m.exec(fs.readFileSync(`/proc/${exporter.pid}/limits`, 'utf8'))![1]));
  });

  it("agrees with /proc: start time to the clock tick's rounding, open descriptors exactly, resident memory", async function () {
    const pid = exporter.pid;
    const url = await exporter.url;
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    try {
      // the scrape's connection is open (and accepted) before the count, so
      // that the count includes it, as the scrape's own does
      await get(`${url}/healthz`, agent);
      const before = openFds(pid);
      const rssBefore = vmRss(pid);
      const m = parseMetrics(await get(`${url}/metrics`, agent));
      const rssAfter = vmRss(pid);
      assert.equal(openFds(pid), before, 'nothing opened or closed meanwhile');
      assert.equal(m.value('process_open_fds'), before);
      // the kernel's start (btime is whole seconds, the start in ticks) and
      // prom-client's (now less the uptime, rounded to a second) differ by
      // the roundings and Node.js's own start-up
      const start = startTime(pid);
      const got = m.value('process_start_time_seconds');
      assert.ok(got >= Math.floor(start) - 1 && got <= Math.ceil(start) + 1, `process_start_time_seconds ${got}, /proc ${start}`);
      const rss = m.value('process_resident_memory_bytes');
      const [low, high] = [Math.min(rssBefore, rssAfter), Math.max(rssBefore, rssAfter)];
      assert.ok(rss >= low * 0.9 && rss <= high * 1.1, `process_resident_memory_bytes ${rss}, VmRSS ${rssBefore}..${rssAfter}`);
      assert.ok(m.value('process_cpu_seconds_total') > 0);
      assert.ok(m.value('nodejs_heap_size_used_bytes') > 0 && m.value('nodejs_heap_size_used_bytes') <= m.value('nodejs_heap_size_total_bytes'));
    } finally {
      agent.destroy();
    }
  });
});

describe('--log-format json', function () {
  let ns: Netns;
  let receiver: OtlpReceiver;

  before(async function () {
    requireRoot();
    ns = createNetns('logjson');
    receiver = await new OtlpReceiver().start();
  });

  after(async function () {
    await receiver?.stop();
    await ns?.destroy();
  });

  it('writes every line of a real run, at debug level, as one JSON object with the keys logfmt has', async function () {
    const exporter = await new RunningExporter(
      ['--log-format', 'json', '--log-level', 'debug', '--probes', 'connect,accept,close,netstack', '--netns', ns.path, '--otlp-endpoint', receiver.endpoint],
      { OTEL_BSP_SCHEDULE_DELAY: '100' },
    ).ready();
    try {
      const server = await startServer(ns, { host: '127.0.0.1', port: 0, down: 10 });
      await runClient(ns, { host: '127.0.0.1', port: server.port, connections: [{ up: 10 }] });
      await server.stop();
      await receiver.waitFor((s) => s.length === 2);
      await exporter.scrape();
      process.kill(exporter.pid, 'SIGUSR1'); // logged and ignored
      for (let i = 0; i < 100 && !exporter.stderr.includes('signal ignored'); i++) await new Promise((r) => setTimeout(r, 20));
    } finally {
      assert.equal((await exporter.stop()).code, 0);
    }
    const lines = exporter.stderr.trimEnd().split('\n');
    const parsed = lines.map((l) => {
      try {
        return JSON.parse(l) as Record<string, unknown>;
      } catch {
        throw new Error(`not a JSON line: ${l}`);
      }
    });
    for (const [i, o] of parsed.entries()) {
      const keys = Object.keys(o);
      const own = keys[2] === 'component' ? ['ts', 'level', 'component', 'msg'] : ['ts', 'level', 'msg'];
      assert.deepEqual(keys.slice(0, own.length), own, lines[i]);
      assert.equal(new Date(o.ts as string).toISOString(), o.ts, lines[i]);
      assert.ok(['error', 'warn', 'info', 'debug'].includes(o.level as string), lines[i]);
      assert.equal(typeof o.msg, 'string', lines[i]);
    }
    const said = (msg: string) => parsed.filter((o) => o.msg === msg);
    assert.ok(
      parsed.some((o) => o.level === 'debug' && o.component === 'libbpf'),
      "libbpf's debug lines",
    );
    assert.equal(said('listening').length, 1);
    assert.deepEqual(
      said('probe attached').map((o) => o.probe),
      ['connect', 'accept', 'close', 'netstack'],
    );
    assert.deepEqual(
      said('sending connection spans').map((o) => [o.component, o.sampleRatio]),
      [['tracing', 1]],
    );
    assert.deepEqual(
      said('signal ignored: it has no meaning here').map((o) => [o.level, o.signal]),
      [['warn', 'SIGUSR1']],
    );
    assert.deepEqual(
      said('stopping').map((o) => o.signal),
      ['SIGTERM'],
    );
  });
});
