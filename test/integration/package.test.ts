// SPDX-License-Identifier: Apache-2.0
// The npm package as users get it: `npm pack` (whose prepack builds), the
// tarball installed into an empty prefix with no compiler within reach, its
// `check` and its exporter scraped; and the systemd unit it carries, verified
// by systemd-analyze and played as systemd would start it: the installed
// exporter as a user other than root with the unit's capabilities only.
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { DEFAULTS } from '../../src/options';
import { onCleanup } from '../helpers/cleanup';
import { RunningExporter } from '../helpers/exporter';
import { requireRoot } from '../helpers/privileges';
import type { Metrics } from '../helpers/prom-text';

const ROOT = path.resolve(__dirname, '..', '..', '..', '..');
const UNIT = path.join(ROOT, 'packaging', 'bpfnet-exporter.service');
const VERSION = (JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;
// the npm that came with this node (scripts/install-node or Debian's layout)
const NPM = path.join(path.dirname(process.execPath), '..', 'lib', 'node_modules', 'npm', 'bin', 'npm-cli.js');
// a user that is not in /etc/passwd, from the range DynamicUser= allocates
// (61184-65519), one per test process
const UID = 61184 + (process.pid % 4000);
// the command that starts the exporter as the unit's user (util-linux), by
// its path: the exporter's own PATH has node alone
const SETPRIV = execFileSync('sh', ['-c', 'command -v setpriv'], { encoding: 'utf8' }).trim();

/** The files a package needs, from the sources: what each source becomes,
 * and what ships as it is; independent of package.json's "files". */
function expectedFiles(): string[] {
  const list = (dir: string) => fs.readdirSync(path.join(ROOT, dir), { recursive: true, encoding: 'utf8' });
  const sources = list('src').filter((f) => !f.startsWith('generated') && fs.statSync(path.join(ROOT, 'src', f)).isFile());
  assert.deepEqual(
    sources.filter((f) => !f.endsWith('.ts')),
    [],
    'src/ holds TypeScript only: a file of another kind needs a place in the package',
  );
  const stems = fs
    .readdirSync(path.join(ROOT, 'bpf'))
    .filter((f) => f.endsWith('.bpf.c'))
    .map((f) => f.replace(/\.bpf\.c$/, ''));
  return [
    'package.json',
    'README.md',
    'LICENSE',
    ...list('bin').map((f) => `bin/${f}`),
    ...sources.map((f) => `build/js/src/${f.replace(/\.ts$/, '.js')}`),
    // the commit it was built from (scripts/record-revision.sh): an install has no .git
    'build/js/src/REVISION',
    ...stems.map((s) => `build/js/src/generated/${s}.js`),
    ...stems.map((s) => `build/bpf/${s}.bpf.o`),
    ...list('dashboards').map((f) => `dashboards/${f}`),
    ...list('packaging').map((f) => `packaging/${f}`),
  ].sort();
}

/** The [Service] settings of a unit file: each key's values, in order. */
function unitSettings(text: string): Map<string, string[]> {
  const out = new Map<string, string[]>();
  let section = '';
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (!line || line.startsWith('#')) continue;
    const s = /^\[(.+)\]$/.exec(line);
    if (s) section = s[1]!;
    else if (section === 'Service') {
      const eq = line.indexOf('=');
      const key = line.slice(0, eq);
      out.set(key, [...(out.get(key) ?? []), line.slice(eq + 1)]);
    }
  }
  return out;
}

/** The one value of a key. */
function setting(unit: Map<string, string[]>, key: string): string {
  const v = unit.get(key);
  assert.equal(v?.length, 1, `${key}= once in the unit`);
  return v[0]!;
}

/** Capability names of a /proc/PID/status mask (CapEff:...), as capsh decodes them. */
function capabilityNames(status: string, field: string): string[] {
  const hex = new RegExp(`^${field}:\\s*([0-9a-f]+)$`, 'm').exec(status)![1]!;
  const decoded = execFileSync('capsh', [`--decode=${hex}`], { encoding: 'utf8' }).trim();
  const names = decoded.slice(decoded.indexOf('=') + 1);
  return names ? names.split(',').sort() : [];
}

describe('npm package', function () {
  this.timeout(180_000);
  let tmp: string;
  let tools: string;
  let prefix: string;
  let tarball: string;
  let installed: string;
  let unit: Map<string, string[]>;
  let caps: string[];

  /** Runs the installed command to its end, wrapped, with only node (and sh) in PATH. */
  const run = (args: string[], wrap: string[] = []) => {
    const argv = [...wrap, path.join(prefix, 'bin', 'bpfnet-exporter'), ...args];
    return spawnSync(argv[0]!, argv.slice(1), { encoding: 'utf8', env: { PATH: tools }, timeout: 60_000 });
  };

  /** setpriv arguments for the unit's user and capabilities (or these). */
  const asUnit = (set = caps): string[] => {
    const list = ['-all', ...set.map((c) => `+${c.replace(/^CAP_/, '').toLowerCase()}`)].join(',');
    return [
      SETPRIV,
      `--reuid=${UID}`,
      `--regid=${UID}`,
      '--clear-groups',
      ...(setting(unit, 'NoNewPrivileges') === 'yes' ? ['--no-new-privs'] : []),
      `--inh-caps=${list}`,
      `--ambient-caps=${list}`,
      `--bounding-set=${list}`,
    ];
  };

  before(function () {
    requireRoot();
    assert.ok(fs.existsSync(NPM), `npm of this node at ${NPM}`);
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'bpfnet-package-'));
    onCleanup(`remove ${tmp}`, () => fs.rmSync(tmp, { recursive: true, force: true }));
    fs.chmodSync(tmp, 0o755); // the unit's user reaches the install through it
    // npm pack runs prepack, which builds; the tarball lands in tmp
    const packed = spawnSync(process.execPath, [NPM, 'pack', '--pack-destination', tmp, '--loglevel=error'], {
      cwd: ROOT,
      encoding: 'utf8',
      env: { ...process.env, PATH: `${path.dirname(process.execPath)}:${process.env.PATH}` },
    });
    assert.equal(packed.status, 0, `npm pack failed:\n${packed.stderr}`);
    tarball = path.join(tmp, `bpfnet-exporter-${VERSION}.tgz`);
    assert.deepEqual(
      fs.readdirSync(tmp).filter((f) => f.endsWith('.tgz')),
      [path.basename(tarball)],
    );
    // a PATH with node and sh only: no clang, cc, c++, make, cmake, bpftool
    tools = path.join(tmp, 'tools');
    fs.mkdirSync(tools);
    // copied, not linked: the unit's user must reach it, as it reaches an
    // installed Node.js, and this one may sit in a checkout under /root (0700)
    fs.copyFileSync(process.execPath, path.join(tools, 'node'));
    fs.chmodSync(path.join(tools, 'node'), 0o755);
    fs.symlinkSync('/bin/sh', path.join(tools, 'sh'));
    prefix = path.join(tmp, 'prefix');
    const install = spawnSync(
      process.execPath,
      [NPM, 'install', '--global', '--prefix', prefix, tarball, '--no-audit', '--no-fund', '--prefer-offline', '--loglevel=error'],
      { cwd: tmp, encoding: 'utf8', env: { ...process.env, PATH: tools } },
    );
    assert.equal(install.status, 0, `npm install of the tarball failed:\n${install.stderr}`);
    installed = path.join(prefix, 'lib', 'node_modules', 'bpfnet-exporter');
    unit = unitSettings(fs.readFileSync(UNIT, 'utf8'));
    caps = setting(unit, 'AmbientCapabilities').split(/\s+/);
  });

  it('packs exactly what runs: compiled sources, BPF objects, dashboards, the unit, README and LICENSE', function () {
    const entries = execFileSync('tar', ['-tzf', tarball], { encoding: 'utf8' }).trim().split('\n');
    assert.deepEqual(entries.map((e) => e.replace(/^package\//, '')).sort(), expectedFiles());
    assert.deepEqual(
      entries.filter((e) => /\.(c|h|ts|map|gyp)$|CMakeLists/.test(e)),
      [],
      'no sources, headers or build files',
    );
  });

  it('installs with no compiler: koffi runs its prebuilt module, nothing was built', function () {
    assert.equal((JSON.parse(fs.readFileSync(path.join(installed, 'package.json'), 'utf8')) as { version: string }).version, VERSION);
    const koffi = path.join(installed, 'node_modules', 'koffi');
    assert.ok(fs.existsSync(path.join(installed, 'node_modules', '@koromix', `koffi-linux-${process.arch}`, `linux_${process.arch}`, 'koffi.node')));
    assert.ok(!fs.existsSync(path.join(koffi, 'build')), 'koffi built nothing from source');
    // packages with install scripts: koffi's checks that its prebuilt module
    // loads (and only without one would build); protobufjs's checks versions
    const scripted: string[] = [];
    const walk = (dir: string) => {
      for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
        if (!e.isDirectory()) continue;
        const pkg = path.join(dir, e.name);
        if (e.name.startsWith('@')) walk(pkg);
        else if (fs.existsSync(path.join(pkg, 'package.json'))) {
          const scripts = (JSON.parse(fs.readFileSync(path.join(pkg, 'package.json'), 'utf8')) as { scripts?: Record<string, string> }).scripts ?? {};
          if (['preinstall', 'install', 'postinstall'].some((s) => s in scripts) || fs.existsSync(path.join(pkg, 'binding.gyp'))) scripted.push(e.name);
          if (fs.existsSync(path.join(pkg, 'node_modules'))) walk(path.join(pkg, 'node_modules'));
        }
      }
    };
    walk(path.join(installed, 'node_modules'));
    assert.deepEqual(scripted.sort(), ['koffi', 'protobufjs']);
  });

  it("answers --version with package.json's version", function () {
    const r = run(['--version']);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout, `${VERSION}\n`);
  });

  it('checks this kernel from the install: every default probe loads and attaches', function () {
    const r = run(['check']);
    assert.equal(r.status, 0, r.stderr);
    for (const probe of DEFAULTS.probes) assert.match(r.stdout, new RegExp(`^probe ${probe} +yes +loads and attaches$`, 'm'));
  });

  it('serves /metrics from the install with every default probe up, and the commit it was packed from', async function () {
    const m = await scrapeInstalled(['run', '--listen', '127.0.0.1:0'], [], {});
    for (const probe of DEFAULTS.probes) assert.equal(m.value('bpfnet_probe_up', { probe }), 1, probe);
    const head = execFileSync('git', ['-C', ROOT, 'rev-parse', 'HEAD'], { encoding: 'utf8' }).trim();
    assert.deepEqual(
      m.find('bpfnet_build_info').map((x) => [x.labels.version, x.labels.revision]),
      [[VERSION, head]],
    );
  });

  it('has a unit that systemd-analyze verifies, pointed at the install', function () {
    const text = fs.readFileSync(UNIT, 'utf8');
    const exec = setting(unitSettings(text), 'ExecStart');
    assert.equal(exec, '/usr/local/bin/bpfnet-exporter run');
    const copy = path.join(tmp, 'bpfnet-exporter.service');
    fs.writeFileSync(copy, text.replace(/^ExecStart=\/usr\/local\/bin\/bpfnet-exporter /m, `ExecStart=${prefix}/bin/bpfnet-exporter `));
    const r = spawnSync('systemd-analyze', ['verify', copy], { encoding: 'utf8' });
    assert.equal(`${r.stdout}${r.stderr}`, '', 'no warning');
    assert.equal(r.status, 0);
  });

  it("runs as the unit starts it: another user than root, the unit's capabilities only, every default probe up", async function () {
    assert.equal(setting(unit, 'DynamicUser'), 'yes');
    assert.equal(setting(unit, 'CapabilityBoundingSet'), setting(unit, 'AmbientCapabilities'));
    assert.equal(setting(unit, 'NoNewPrivileges'), 'yes');
    const env = Object.fromEntries((unit.get('Environment') ?? []).map((e) => e.split('=', 2) as [string, string]));
    const args = setting(unit, 'ExecStart').split(/\s+/).slice(1);
    // the EnvironmentFile's part: where to listen
    const m = await scrapeInstalled(args, asUnit(), { ...env, BPFNET_LISTEN: '127.0.0.1:0' }, (status) => {
      assert.equal(/^Uid:\s+(\d+)/m.exec(status)![1], String(UID));
      const want = caps.map((c) => c.toLowerCase()).sort();
      for (const field of ['CapEff', 'CapAmb', 'CapBnd']) assert.deepEqual(capabilityNames(status, field), want, field);
    });
    for (const probe of DEFAULTS.probes) assert.equal(m.value('bpfnet_probe_up', { probe }), 1, probe);
  });

  it('stops for good on a misspelled variable of the environment file: one line, exit status 2, no restart', function () {
    assert.equal(setting(unit, 'Restart'), 'on-failure');
    assert.equal(setting(unit, 'RestartPreventExitStatus'), '2');
    assert.equal(setting(unit, 'EnvironmentFile'), '-/etc/default/bpfnet-exporter');
    const r = spawnSync(path.join(prefix, 'bin', 'bpfnet-exporter'), ['run'], { encoding: 'utf8', env: { PATH: tools, BPFNET_LISTN: '127.0.0.1:0' } });
    assert.equal(r.status, 2);
    assert.equal(r.stderr, 'bpfnet-exporter: BPFNET_LISTN: not a setting of bpfnet-exporter; unset it, or see --help (each flag --NAME is also BPFNET_NAME)\n');
  });

  it("needs each of the unit's capabilities", function () {
    const fexit = /^fexit +yes/m.test(run(['check']).stdout);
    for (const cap of caps) {
      const r = run(['check'], asUnit(caps.filter((c) => c !== cap)));
      const rows = `${cap} dropped:\n${r.stdout}${r.stderr}`;
      if (cap === 'CAP_BPF' || cap === 'CAP_PERFMON') {
        assert.equal(r.status, 1, rows);
        assert.match(r.stdout, /^privileges +no +uid \d+ with .*: run as root, or grant CAP_BPF and CAP_PERFMON$/m, rows);
      } else if (cap === 'CAP_DAC_READ_SEARCH') {
        // tracefs is root's alone: the syscall tracepoints' ids cannot be read
        assert.equal(r.status, 0, rows);
        if (fexit) assert.match(r.stdout, /^probe accept +yes +loads and attaches$/m, rows);
        else assert.match(r.stdout, /^probe accept +no +attach \S+ to tracepoint\/syscalls\/sys_exit_accept4?: EACCES /m, rows);
      } else assert.fail(`no test says why the unit needs ${cap}`);
    }
  });

  /** Starts the installed exporter (wrapped, with exactly env and node in
   * PATH), checks its /proc status, scrapes once its probes are attached,
   * stops it with SIGTERM. */
  async function scrapeInstalled(args: string[], wrap: string[], env: NodeJS.ProcessEnv, onStatus?: (status: string) => void): Promise<Metrics> {
    const exporter = new RunningExporter(args, { PATH: tools, ...env }, wrap, true, { command: [path.join(prefix, 'bin', 'bpfnet-exporter')], cwd: '/' });
    await exporter.url;
    onStatus?.(fs.readFileSync(`/proc/${exporter.pid}/status`, 'utf8'));
    const m = await (await exporter.ready()).scrape();
    assert.deepEqual(await exporter.stop(), { code: 0, signal: null }, exporter.stderr);
    return m;
  }
});
