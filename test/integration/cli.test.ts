// SPDX-License-Identifier: Apache-2.0
// The command line as users meet it: bad input gets one line and the right
// exit status, signals stop it without leaving a program in the kernel, a
// probe that cannot attach leaves the others running.
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { DEFAULT_BPF_DIR } from '../../src/paths';
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

/** TCP ports a process listens on, from ss. */
function listeningPorts(pid: number): number[] {
  const out = execFileSync('ss', ['-ltnpH'], { encoding: 'utf8' });
  return out
    .split('\n')
    .filter((l) => l.includes(`pid=${pid},`))
    .map((l) => Number(/:(\d+)\s/.exec(l.split(/\s+/)[3] + ' ')![1]))
    .sort((a, b) => a - b);
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
      ['a listen address not on this host', ['--listen', '192.0.2.1:19435'], /not an address of this host/],
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
      [
        'a negative series lifetime',
        ['--probes', 'netstack', '--netstack-series-ttl', '-1'],
        /--netstack-series-ttl -1: give seconds, from 1 to 31536000, or 0 \(never\)$/,
      ],
      [
        'a series lifetime under a second',
        ['--probes', 'netstack', '--netstack-series-ttl', '0.0001'],
        /--netstack-series-ttl 0.0001: give seconds, from 1 to/,
      ],
      ['an empty series lifetime', ['--netstack-series-ttl', ''], /--netstack-series-ttl "": not a number; see --help/],
      ['an empty sample ratio', ['--otlp-endpoint', 'http://127.0.0.1:4318', '--trace-sample-ratio', ''], /--trace-sample-ratio "": not a number/],
      ['an empty pid', ['--pid', ''], /--pid "": an empty value; give one, or leave the flag out$/],
      ['an empty port', ['--port', ''], /--port "": an empty value/],
      ['an empty port in a list', ['--port', '80,,443'], /--port "80,,443": an empty value/],
      ['an empty netns', ['--netns', ''], /--netns "": an empty value/],
      ['an empty cgroup', ['--cgroup', ''], /--cgroup "": an empty value/],
      ['an empty sidecar command', ['--sidecar-comm', ''], /--sidecar-comm "": an empty value/],
      ['an empty BPF directory', ['--bpf-dir', ''], /--bpf-dir is empty: give the directory holding tcp-lifecycle.bpf.o, or leave the flag out/],
      [
        'more ports than the filter map holds',
        ['--port', Array.from({ length: 1025 }, (_, i) => i + 1).join(',')],
        /--port: 1025 distinct values; give at most 1024 \(the size of its filter map\)/,
      ],
      ['a boolean that is neither', ['--enable-bpf-stats=maybe'], /--enable-bpf-stats "maybe": not a boolean; give true or false \(1\/0, yes\/no, on\/off\)/],
      ['a readiness it does not know', ['--readiness', 'soon'], /Invalid values: Argument: readiness, Given: "soon", Choices: "serving", "all-probes"/],
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
      assert.match(oneLine(dir.stderr), /BPFNET_BPF_DIR \/tmp: no BPF objects there/);
      assert.equal(dir.code, 2);
    });

    const envUsage: [string, NodeJS.ProcessEnv, RegExp][] = [
      ['an empty variable', { BPFNET_PORT: '' }, /^bpfnet-exporter: BPFNET_PORT is empty: give a value, or unset it$/],
      ['a bad value, naming the variable', { BPFNET_PORT: '0' }, /^bpfnet-exporter: BPFNET_PORT 0: not a port; give 1 to 65535$/],
      ['a boolean that is neither', { BPFNET_REDIRECT: 'maybe' }, /^bpfnet-exporter: BPFNET_REDIRECT "maybe": not a boolean/],
      ['a misspelled flag', { BPFNET_PROBE: 'connect' }, /^bpfnet-exporter: BPFNET_PROBE: not a setting of bpfnet-exporter; unset it, or see --help/],
    ];
    for (const [what, env, message] of envUsage) {
      it(`exits 2 for ${what} in BPFNET_*`, async function () {
        const r = await runCli(['--listen', '127.0.0.1:0'], { env });
        assert.match(oneLine(r.stderr), message);
        assert.equal(r.code, 2);
      });
    }

    it('takes booleans from BPFNET_* in the usual spellings', async function () {
      const exporter = await new RunningExporter([], { BPFNET_ENABLE_BPF_STATS: '1' }).ready();
      const r = await exporter.stop();
      assert.equal(r.code, 0);
      assert.match(exporter.stderr, /msg="BPF run time statistics on while running"/);
    });

    it('exits 2 for a listen address that is not UTF-8', async function () {
      const r = await runCli([], { wrap: ['sh', '-c', `exec "$@" --listen "$(printf 'h\\377st:19435')"`, 'sh'] });
      assert.match(oneLine(r.stderr), /--listen h\uFFFDst:19435: not an address; give HOST:PORT/);
      assert.equal(r.code, 2);
    });

    describe('BPF objects that are not this build', function () {
      let dir: string;
      before(function () {
        dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bpfnet-objects-'));
        for (const f of fs.readdirSync(DEFAULT_BPF_DIR)) fs.writeFileSync(path.join(dir, f), 'not an ELF file\n');
      });
      after(() => fs.rmSync(dir, { recursive: true, force: true }));

      it('exits 2 for a --bpf-dir of corrupt objects, before anything loads', async function () {
        const r = await runCli(['--listen', '127.0.0.1:0', '--bpf-dir', dir]);
        assert.match(
          oneLine(r.stderr),
          new RegExp(
            `--bpf-dir: cannot use ${dir}/tcp-lifecycle.bpf.o \\(LIBBPF_ERRNO 4001 \\(BPF object format invalid\\).*\\); give the directory of this build's BPF objects$`,
          ),
        );
        assert.equal(r.code, 2);
      });

      it("exits 2 for another object under a probe's name", async function () {
        fs.copyFileSync(path.join(DEFAULT_BPF_DIR, 'netstack.bpf.o'), path.join(dir, 'tcp-lifecycle.bpf.o'));
        const r = await runCli(['--listen', '127.0.0.1:0', '--bpf-dir', dir]);
        assert.match(oneLine(r.stderr), /--bpf-dir: cannot use .*tcp-lifecycle.bpf.o \(has no struct \w+, which the exporter was built against/);
        assert.equal(r.code, 2);
      });
    });

    it('exits 2 for an OTLP protocol it does not speak (OTEL_EXPORTER_OTLP_TRACES_PROTOCOL=http/thrift)', async function () {
      const r = await runCli(['--listen', '127.0.0.1:0', '--otlp-endpoint', 'http://127.0.0.1:4318'], {
        env: { OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: 'http/thrift' },
      });
      assert.match(
        oneLine(r.stderr),
        /OTEL_EXPORTER_OTLP_TRACES_PROTOCOL http\/thrift: not supported; give http\/protobuf \(the default\), http\/json or grpc$/,
      );
      assert.equal(r.code, 2);
    });

    it('exits 2 for a gRPC endpoint with a path (OTEL_EXPORTER_OTLP_PROTOCOL=grpc)', async function () {
      const r = await runCli(['--listen', '127.0.0.1:0'], {
        env: { OTEL_EXPORTER_OTLP_PROTOCOL: 'grpc', OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'http://127.0.0.1:4317/v1/traces' },
      });
      assert.match(oneLine(r.stderr), /OTEL_EXPORTER_OTLP_TRACES_ENDPOINT http:\/\/127.0.0.1:4317\/v1\/traces: a gRPC endpoint has no path or query/);
      assert.equal(r.code, 2);
    });

    it('exits 2 for a log format it does not know, from the flag or BPFNET_LOG_FORMAT', async function () {
      for (const [args, env] of [
        [['--log-format', 'xml'], {}],
        [[], { BPFNET_LOG_FORMAT: 'xml' }],
      ] as const) {
        const r = await runCli(['--listen', '127.0.0.1:0', ...args], { env });
        assert.match(oneLine(r.stderr), /^bpfnet-exporter: Invalid values: Argument: log-format, Given: "xml", Choices: "logfmt", "json"; see --help$/);
        assert.equal(r.code, 2);
      }
    });

    it('writes its one line as a JSON log line under --log-format json or BPFNET_LOG_FORMAT=json', async function () {
      for (const [args, env] of [
        [['--log-format=json', '--probes', 'bogus'], {}],
        [['--probes', 'bogus'], { BPFNET_LOG_FORMAT: 'json' }],
      ] as const) {
        const r = await runCli(['--listen', '127.0.0.1:0', ...args], { env });
        const lines = r.stderr.trim().split('\n');
        assert.equal(lines.length, 1, r.stderr);
        const line = JSON.parse(lines[0]!) as Record<string, unknown>;
        assert.deepEqual(Object.keys(line), ['ts', 'level', 'msg']);
        assert.equal(new Date(line.ts as string).toISOString(), line.ts);
        assert.deepEqual([line.level, line.msg], ['error', '--probes: unknown probe "bogus"; known probes: connect,accept,close,netstack']);
        assert.equal(r.code, 2);
      }
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
    for (const signal of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) {
      it(`on ${signal} detaches and unloads every program and exits 0`, async function () {
        const exporter = await new RunningExporter([]).ready();
        const ids = programsOf(exporter.pid);
        assert.equal(ids.length, 3, 'tcp_state, accept_exit, accept4_exit');
        const r = await exporter.stop(signal);
        assert.deepEqual([r.code, r.signal], [0, null]);
        assert.deepEqual(await stillLoaded(ids), []);
      });
    }

    it('ignores SIGUSR1: no inspector opens, it logs the signal and goes on', async function () {
      const exporter = await new RunningExporter([]).ready();
      const port = Number(new URL(await exporter.url).port);
      process.kill(exporter.pid, 'SIGUSR1');
      await new Promise((r) => setTimeout(r, 500));
      process.kill(exporter.pid, 'SIGUSR1');
      const m = await exporter.scrape();
      assert.equal(m.find('bpfnet_probe_up').length, 3);
      assert.deepEqual(listeningPorts(exporter.pid), [port], 'the metrics port and nothing else (no inspector on 9229)');
      assert.equal((await exporter.stop()).code, 0);
      assert.equal(exporter.stderr.match(/level=warn msg="signal ignored: it has no meaning here" signal=SIGUSR1/g)?.length, 2);
    });

    it('leaves no program behind even when killed with SIGKILL', async function () {
      const exporter = await new RunningExporter([]).ready();
      const ids = programsOf(exporter.pid);
      assert.equal(ids.length, 3);
      await exporter.stop('SIGKILL');
      // the kernel frees programs with their last descriptor; nothing is pinned
      assert.deepEqual(await stillLoaded(ids), []);
    });

    it('keeps the other probes running when one cannot attach, and is ready unless asked for all probes', async function () {
      // without tracefs the accept() tracepoints cannot attach; tp_btf needs none
      const down = /accept \(tracepoint\/syscalls\/sys_exit_accept\{,4\} needs tracefs, which is not mounted: mount -t tracefs nodev \/sys\/kernel\/tracing\)/;
      const strict = new RunningExporter(['--readiness', 'all-probes'], {}, HIDE_TRACEFS);
      let notReady = await httpGet(`${await strict.url}/readyz`);
      for (let i = 0; i < 50 && !/accept/.test(notReady.body); i++) notReady = await httpGet(`${await strict.url}/readyz`);
      assert.equal(notReady.status, 503);
      assert.match(notReady.body, new RegExp(`^not ready: ${down.source}`));
      assert.equal((await strict.stop()).code, 0);

      const exporter = new RunningExporter([], {}, HIDE_TRACEFS);
      const url = await exporter.url;
      let ready = await httpGet(`${url}/readyz`);
      for (let i = 0; i < 50 && !/accept/.test(ready.body); i++) ready = await httpGet(`${url}/readyz`);
      assert.equal(ready.status, 200);
      assert.match(ready.body, new RegExp(`^ready; down: ${down.source}`));
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
