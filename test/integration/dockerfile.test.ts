// SPDX-License-Identifier: Apache-2.0
// The Dockerfile, without a Docker engine (none runs here): its build context
// as .dockerignore leaves it, its stages played on this Debian 12 host (every
// COPY and RUN for real, the apt-get lines checked against the packages), and
// what the last stage holds started as the chart starts it, from a read-only
// root as the chart's readOnlyRootFilesystem makes it, then scraped.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { onCleanup } from '../helpers/cleanup';
import { buildStage, contextFiles, parseDockerfile, type BuiltStage, type Stage } from '../helpers/dockerfile';
import { container, render } from '../helpers/chart-check';
import { RunningExporter } from '../helpers/exporter';
import { requireRoot } from '../helpers/privileges';

const ROOT = path.resolve(__dirname, '..', '..', '..', '..');

/** The Debian package that installed a file: dpkg knows each file by the path
 * its package ships, under /usr or not (Debian 12 merges /lib into /usr/lib). */
function owner(file: string): string {
  const real = fs.realpathSync(file);
  const candidates = [file, real, ...[file, real].map((p) => (p.startsWith('/usr/') ? p.slice(4) : `/usr${p}`))];
  for (const c of candidates) {
    try {
      return execFileSync('dpkg', ['-S', c], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] })
        .split(':')[0]!
        .trim();
    } catch {
      /* not by this path */
    }
  }
  throw new Error(`no Debian package installed ${file}`);
}

/** Debian packages of the shared libraries a binary loads, by ldd. */
function libraryPackages(binary: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of execFileSync('ldd', [binary], { encoding: 'utf8' }).split('\n')) {
    const m = /=> (\/\S+)/.exec(line) ?? /^\s*(\/\S+)/.exec(line);
    if (m) out.set(path.basename(m[1]!), owner(m[1]!));
  }
  return out;
}

/** A package and everything it depends on, recursively. */
function withDependencies(pkgs: string[]): Set<string> {
  const text = execFileSync(
    'apt-cache',
    ['depends', '--recurse', '--no-recommends', '--no-suggests', '--no-conflicts', '--no-breaks', '--no-replaces', '--no-enhances', ...pkgs],
    {
      encoding: 'utf8',
    },
  );
  return new Set(
    text
      .split('\n')
      .filter((l) => /^\S/.test(l))
      .map((l) => l.replace(/:\w+$/, '').trim()),
  );
}

describe('Dockerfile', function () {
  this.timeout(300_000);
  let stages: Stage[];
  const built = new Map<string, BuiltStage>();
  let tmp: string;
  let context: string;
  let runtime: BuiltStage;

  before(function () {
    requireRoot();
    stages = parseDockerfile(fs.readFileSync(path.join(ROOT, 'Dockerfile'), 'utf8'));
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'bpfnet-dockerfile-'));
    onCleanup(`remove ${tmp}`, () => fs.rmSync(tmp, { recursive: true, force: true }));
    // the build context docker would send
    context = path.join(tmp, 'context');
    for (const f of contextFiles(ROOT)) {
      fs.mkdirSync(path.dirname(path.join(context, f)), { recursive: true });
      fs.copyFileSync(path.join(ROOT, f), path.join(context, f));
      fs.chmodSync(path.join(context, f), fs.statSync(path.join(ROOT, f)).mode);
    }
    for (const stage of stages) built.set(stage.name, buildStage(stage, path.join(tmp, `stage-${stage.name}`), context, built));
    runtime = built.get(stages[stages.length - 1]!.name)!;
  });

  it('builds every stage from Debian 12 images, with packages Debian 12 has and this host stands in with', function () {
    assert.deepEqual(
      stages.map((s) => s.from),
      stages.map(() => 'node:22-bookworm-slim'),
    );
    assert.deepEqual(
      [...built.values()].map((b) => b.apt),
      [['clang', 'libbpf-dev', 'bpftool'], [], ['libbpf1']],
    );
    for (const pkg of [...built.values()].flatMap((b) => b.apt)) {
      const policy = execFileSync('apt-cache', ['policy', pkg], { encoding: 'utf8' });
      assert.match(policy, /deb\.debian\.org\/debian(-security)? bookworm/, `${pkg} comes from Debian 12`);
      assert.match(execFileSync('dpkg-query', ['-W', '-f=${Status}', pkg], { encoding: 'utf8' }), /install ok installed/, `${pkg} is installed on this host`);
    }
  });

  it('sends a context of sources only: no build outputs, node_modules or git', function () {
    const files = contextFiles(ROOT);
    assert.deepEqual(
      files.filter((f) => /^(build|node_modules|\.git|dashboards|helm|test|bench)\//.test(f)),
      [],
    );
    assert.ok(files.includes('bpf/tcp-lifecycle.bpf.c') && files.includes('src/cli.ts') && files.includes('bin/bpfnet-exporter'));
    const bytes = files.reduce((n, f) => n + fs.statSync(path.join(ROOT, f)).size, 0);
    assert.ok(bytes < 4 << 20, `context of ${bytes} bytes`);
  });

  it('leaves in the last stage the exporter, its BPF objects and its production dependencies only', function () {
    const app = path.join(runtime.root, runtime.workdir);
    assert.equal(runtime.workdir, '/app');
    assert.deepEqual(fs.readdirSync(app).sort(), ['bin', 'build', 'node_modules', 'package.json']);
    const objects = fs
      .readdirSync(path.join(ROOT, 'bpf'))
      .filter((f) => f.endsWith('.bpf.c'))
      .map((f) => f.replace(/\.c$/, '.o'));
    assert.deepEqual(fs.readdirSync(path.join(app, 'build', 'bpf')).sort(), objects.sort());
    assert.deepEqual(fs.readdirSync(path.join(app, 'build', 'js')), ['src']);
    assert.ok(fs.existsSync(path.join(app, 'build', 'js', 'src', 'cli.js')));
    // package-lock.json marks what only development needs (dev) and what only some platforms get (optional)
    const lock = JSON.parse(fs.readFileSync(path.join(ROOT, 'package-lock.json'), 'utf8')) as {
      packages: Record<string, { dev?: boolean; optional?: boolean }>;
    };
    const entries = Object.entries(lock.packages).filter(([p]) => p.startsWith('node_modules/'));
    const there = (p: string) => fs.existsSync(path.join(app, p, 'package.json'));
    assert.deepEqual(
      entries.filter(([p, e]) => e.dev && there(p)).map(([p]) => p),
      [],
      'no development package',
    );
    assert.deepEqual(
      entries.filter(([p, e]) => !e.dev && !e.optional && !there(p)).map(([p]) => p),
      [],
      'every production package',
    );
    assert.ok(!there('node_modules/typescript') && there('node_modules/koffi'));
    assert.deepEqual(runtime.entrypoint, ['/app/bin/bpfnet-exporter']);
    assert.deepEqual(runtime.cmd, ['run']);
    const entry = path.join(runtime.root, runtime.entrypoint![0]!);
    assert.ok(fs.statSync(entry).mode & 0o111, 'the entrypoint is executable');
  });

  it('gives koffi the libbpf.so.1 it loads and the libraries its module needs, from libbpf1 and the Node.js base image', function () {
    const native = fs.readFileSync(path.join(ROOT, 'src', 'libbpf', 'native.ts'), 'utf8');
    assert.match(native, /loadLibrary\('libbpf\.so\.1'\)/);
    const provided = withDependencies(runtime.apt);
    // what node itself loads is in any image that runs node
    for (const pkg of libraryPackages(process.execPath).values()) provided.add(pkg);
    const app = path.join(runtime.root, runtime.workdir);
    const koffi = path.join(app, 'node_modules', '@koromix', `koffi-linux-${process.arch}`, `linux_${process.arch}`, 'koffi.node');
    const libbpf = execFileSync('dpkg', ['-L', 'libbpf1'], { encoding: 'utf8' })
      .split('\n')
      .find((f) => f.endsWith('/libbpf.so.1'))!;
    assert.ok(libbpf, 'libbpf1 has libbpf.so.1');
    const needed = new Map([...libraryPackages(koffi), ...libraryPackages(libbpf)]);
    assert.ok(needed.has('libstdc++.so.6') && needed.has('libelf.so.1'), [...needed.keys()].join(' '));
    for (const [lib, pkg] of needed) assert.ok(provided.has(pkg), `${lib} (${pkg}) is in the runtime image`);
  });

  it("runs the chart's arguments from a read-only root: probes up, ready, stopped by SIGTERM", async function () {
    const args: string[] = container(render().one('DaemonSet')).args;
    assert.equal(args[0], 'run');
    // every mount but the kernel's file systems read-only, in a mount namespace of its own
    const wrapper = path.join(tmp, 'read-only-root.sh');
    fs.writeFileSync(
      wrapper,
      [
        'set -e',
        "awk '{print $2}' /proc/self/mounts | sort -u | while read -r m; do",
        '  case "$m" in /proc|/proc/*|/sys|/sys/*|/dev|/dev/*) continue ;; esac',
        '  mount -o remount,bind,ro "$m"',
        'done',
        `if touch ${runtime.root}/written 2>/dev/null || touch /written-by-test 2>/dev/null; then echo "root is writable" >&2; exit 9; fi`,
        'exec "$@"',
      ].join('\n'),
    );
    const entry = path.join(runtime.root, runtime.entrypoint![0]!);
    const exporter = new RunningExporter(
      [...args, '--listen=127.0.0.1:0'],
      { PATH: process.env.PATH, ...runtime.env },
      ['unshare', '-m', '--propagation', 'private', 'bash', wrapper],
      true,
      {
        command: [entry],
        cwd: '/',
      },
    );
    const metrics = await (await exporter.ready()).scrape();
    for (const probe of ['connect', 'accept', 'close']) assert.equal(metrics.value('bpfnet_probe_up', { probe }), 1, probe);
    // the build context has no .git: the image cannot know its commit
    assert.deepEqual(
      metrics.find('bpfnet_build_info').map((x) => [x.labels.version, x.labels.revision, x.value]),
      [[JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')).version, 'unknown', 1]],
    );
    assert.deepEqual(await exporter.stop(), { code: 0, signal: null }, exporter.stderr);
  });
});
