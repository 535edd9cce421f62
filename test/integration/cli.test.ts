// SPDX-License-Identifier: Apache-2.0
// The command line as users meet it: bad input gets one line and the right
// exit status, signals stop it without leaving a program in the kernel, a
// probe that cannot attach leaves the others running.
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import { httpGet, RunningExporter, runCli } from '../helpers/exporter';
import { HIDE_TRACEFS, requireRoot } from '../helpers/privileges';

/** Ids of the BPF programs a process holds (through program or link
 * descriptors), from /proc/PID/fdinfo. */
function programsOf(pid: number): number[] {
  const ids = new Set<number>();
  for (const fd of fs.readdirSync(`/proc/${pid}/fd`)) {
    let info: string;
    try {
      info = fs.readFileSync(`/proc/${pid}/fdinfo/${fd}`, 'utf8');
    } catch {
      continue;
    }
    const m = /^prog_id:\s*(\d+)$/m.exec(info);
    if (m) ids.add(Number(m[1]));
  }
  return [...ids].sort((a, b) => a - b);
}

function loadedIds(): Set<number> {
  const progs = JSON.parse(execFileSync('bpftool', ['prog', 'show', '--json'], { encoding: 'utf8' })) as { id: number }[];
  return new Set(progs.map((p) => p.id));
}

/** Which of ids are still loaded once the kernel has had up to 10 s to free
 * them (it releases a program after its last descriptor, not at once). */
async function stillLoaded(ids: number[]): Promise<number[]> {
  for (let i = 0; ; i++) {
    const loaded = loadedIds();
    const left = ids.filter((id) => loaded.has(id));
    if (!left.length || i === 100) return left;
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** A pid that is not running: one of a process that has just exited. */
function deadPid(): number {
  const child = spawn('true');
  const pid = child.pid!;
  execFileSync('sleep', ['0.2']);
  return pid;
}

const oneLine = (stderr: string) => {
  const lines = stderr.trim().split('\n');
  assert.equal(lines.length, 1, `expected one line, got:\n${stderr}`);
  assert.match(lines[0]!, /^bpfnet-exporter: /);
  assert.doesNotMatch(stderr, /\n\s+at /, 'no stack trace');
  return lines[0]!;
};

describe('command line', function () {
  before(requireRoot);

  describe('bad input: one line naming the problem and the fix', function () {
    const usage: [string, string[], RegExp][] = [
      ['an unknown probe', ['--probes', 'connect,bogus'], /unknown probe "bogus"; known probes: connect,accept,close,netstack$/],
      ['an unknown flag', ['--bogus'], /Unknown argument: bogus/],
      ['a malformed listen address', ['--listen', 'localhost'], /--listen localhost: not an address; give HOST:PORT/],
      ['a listen address not on this host', ['--listen', '192.0.2.1:9435'], /not an address of this host/],
      ['a pid that does not exist', ['--pid', String(deadPid())], /no such process/],
      ['a pid that is not a number', ['--pid', 'abc'], /--pid abc: not a number/],
      ['a netns path that does not exist', ['--netns', '/run/netns/bpfnet-none'], /--netns \/run\/netns\/bpfnet-none: no such file/],
      ['a namespace file of another kind', ['--netns', '/proc/self/ns/mnt'], /not a network namespace/],
      ['a cgroup that does not exist', ['--cgroup', '/bpfnet-no-such-cgroup'], /no such cgroup/],
      ['a directory that is not a cgroup', ['--cgroup', '/tmp'], /--cgroup \/tmp: not a cgroup v2 directory/],
      ['a port out of range', ['--port', '70000'], /--port 70000: not a port; give 1 to 65535/],
      [
        'an OTLP endpoint that is not http',
        ['--otlp-endpoint', 'collector:4318'],
        /--otlp-endpoint collector:4318: not http or https; give the collector's OTLP\/HTTP address, such as http:\/\/localhost:4318/,
      ],
      [
        'a sample ratio above 1',
        ['--otlp-endpoint', 'http://127.0.0.1:4318', '--trace-sample-ratio', '1.5'],
        /--trace-sample-ratio 1.5: give a ratio from 0 to 1/,
      ],
      [
        'spans without a TCP probe',
        ['--probes', 'netstack', '--otlp-endpoint', 'http://127.0.0.1:4318'],
        /spans come from the TCP probes: add one of connect,accept,close to --probes/,
      ],
      [
        'a sidecar command too long for the kernel',
        ['--sidecar-comm', 'a-name-far-too-long'],
        /--sidecar-comm "a-name-far-too-long": give a command name of 1 to 15 bytes/,
      ],
      ['a sidecar pid that does not exist', ['--sidecar-pid', String(deadPid())], /--sidecar-pid \d+: no such process/],
      ['a ring buffer size that is not a power of two', ['--event-ring-bytes', '5000'], /--event-ring-bytes 5000: give a power of two from 4096/],
      ['a negative series lifetime', ['--probes', 'netstack', '--netstack-series-ttl', '-1'], /--netstack-series-ttl -1: give seconds, 0 or more \(0: never\)/],
      ['a directory without BPF objects', ['--bpf-dir', '/tmp'], /--bpf-dir \/tmp: no BPF objects there; give the directory holding tcp-lifecycle.bpf.o/],
    ];
    for (const [what, args, message] of usage) {
      it(`exits 2 for ${what}`, async function () {
        const r = await runCli(['--listen', '127.0.0.1:0', ...args]);
        assert.match(oneLine(r.stderr), message);
        assert.equal(r.code, 2);
      });
    }

    it('reads flags from BPFNET_* environment variables, bad ones included', async function () {
      const r = await runCli([], { env: { BPFNET_PROBES: 'nope', BPFNET_LISTEN: '127.0.0.1:0' } });
      assert.match(oneLine(r.stderr), /unknown probe "nope"/);
      assert.equal(r.code, 2);
      const dir = await runCli(['check'], { env: { BPFNET_BPF_DIR: '/tmp' } });
      assert.match(oneLine(dir.stderr), /--bpf-dir \/tmp: no BPF objects there/);
      assert.equal(dir.code, 2);
    });

    it('exits 2 for an OTLP protocol it does not speak (OTEL_EXPORTER_OTLP_TRACES_PROTOCOL=grpc)', async function () {
      const r = await runCli(['--listen', '127.0.0.1:0', '--otlp-endpoint', 'http://127.0.0.1:4318'], { env: { OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: 'grpc' } });
      assert.match(oneLine(r.stderr), /OTEL_EXPORTER_OTLP_TRACES_PROTOCOL grpc: not supported; give http\/protobuf \(the default\) or http\/json/);
      assert.equal(r.code, 2);
    });

    it('exits 1 when the listen port is in use', async function () {
      const busy = net.createServer().listen(0, '127.0.0.1');
      await new Promise((r) => busy.once('listening', r));
      const port = (busy.address() as net.AddressInfo).port;
      const r = await runCli(['--listen', `127.0.0.1:${port}`]);
      busy.close();
      assert.match(oneLine(r.stderr), new RegExp(`--listen 127.0.0.1:${port}: address already in use; stop what listens there or choose another --listen`));
      assert.equal(r.code, 1);
    });

    it('exits 1 when not permitted to load BPF programs', async function () {
      const r = await runCli(['--listen', '127.0.0.1:0'], { wrap: ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups', '--inh-caps=-all'] });
      assert.match(oneLine(r.stderr), /not permitted to load BPF programs: run as root, or grant CAP_BPF/);
      assert.equal(r.code, 1);
    });

    it('exits 1 when the kernel has no BTF', async function () {
      const hideBtf = ['unshare', '-m', 'sh', '-c', 'mount -t tmpfs none /sys/kernel/btf && exec "$@"', 'sh'];
      const r = await runCli(['--listen', '127.0.0.1:0'], { wrap: hideBtf });
      assert.match(oneLine(r.stderr), /kernel BTF is missing \(\/sys\/kernel\/btf\/vmlinux\): run a kernel built with CONFIG_DEBUG_INFO_BTF=y/);
      assert.equal(r.code, 1);
    });
  });

  describe('lifecycle', function () {
    for (const signal of ['SIGTERM', 'SIGINT'] as const) {
      it(`on ${signal} detaches and unloads every program and exits 0`, async function () {
        const exporter = await new RunningExporter([]).ready();
        const ids = programsOf(exporter.pid);
        assert.equal(ids.length, 3, 'tcp_state, accept_exit, accept4_exit');
        const r = await exporter.stop(signal);
        assert.deepEqual([r.code, r.signal], [0, null]);
        assert.deepEqual(await stillLoaded(ids), []);
      });
    }

    it('leaves no program behind even when killed with SIGKILL', async function () {
      const exporter = await new RunningExporter([]).ready();
      const ids = programsOf(exporter.pid);
      assert.equal(ids.length, 3);
      await exporter.stop('SIGKILL');
      // the kernel frees programs with their last descriptor; nothing is pinned
      assert.deepEqual(await stillLoaded(ids), []);
    });

    it('keeps the other probes running when one cannot attach, and is not ready', async function () {
      // without tracefs the accept() tracepoints cannot attach; tp_btf needs none
      const exporter = new RunningExporter([], {}, HIDE_TRACEFS);
      const url = await exporter.url;
      let ready = await httpGet(`${url}/readyz`);
      for (let i = 0; i < 50 && !/accept/.test(ready.body); i++) ready = await httpGet(`${url}/readyz`);
      assert.equal(ready.status, 503);
      assert.match(
        ready.body,
        /not ready: accept \(tracepoint\/syscalls\/sys_exit_accept\{,4\} needs tracefs, which is not mounted: mount -t tracefs nodev \/sys\/kernel\/tracing\)/,
      );
      const m = await exporter.scrape();
      assert.deepEqual(
        m.find('bpfnet_probe_up').map((s) => [s.labels.probe, s.value]),
        [
          ['connect', 1],
          ['accept', 0],
          ['close', 1],
        ],
      );
      assert.match(exporter.stderr, /level=error .*msg="probe down" probe=accept reason=".*mount -t tracefs/);
      const r = await exporter.stop();
      assert.equal(r.code, 0);
    });
  });
});
