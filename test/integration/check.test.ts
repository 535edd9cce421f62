// SPDX-License-Identifier: Apache-2.0
// `bpfnet-exporter check` against the real kernel: this machine's documented
// facts (DESIGN.md: no kprobes, fentry refused with EPERM), the same command
// unprivileged and without BTF or tracefs, Linux 6.1 under kvm-run, and no
// program left in the kernel or attached to a cgroup afterwards.
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { onCleanup } from '../helpers/cleanup';
import { CLI, runCli, sleep, type RunResult } from '../helpers/exporter';
import { HIDE_TRACEFS, requireRoot, withCapabilities } from '../helpers/privileges';
import { cgroup2Mount } from '../../src/system';

const UNPRIVILEGED = ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups', '--inh-caps=-all'];
const HIDE_BTF = ['unshare', '-m', 'sh', '-c', 'mount -t tmpfs none /sys/kernel/btf && exec "$@"', 'sh'];
const TRACEFS_FIX = 'mount -t tracefs nodev /sys/kernel/tracing';
const PRIVILEGE_FIX = 'run as root, or grant CAP_BPF and CAP_PERFMON';
const BTF_FIX = 'run a kernel built with CONFIG_DEBUG_INFO_BTF=y';
const PROBES = ['connect', 'accept', 'close'];
const ALL_PROBES = [...PROBES, 'netstack'];
/** every program check loads: bpf/features.bpf.c, tcp-lifecycle.bpf.c, sock-redirect.bpf.c and netstack.bpf.c */
const OUR_PROGRAMS = new Set([
  'feat_tp_btf',
  'feat_tracepoint',
  'feat_raw_tp',
  'feat_kprobe',
  'feat_kretprobe',
  'feat_fentry',
  'feat_fexit',
  'feat_sockops',
  'feat_sk_msg',
  'tcp_state',
  'accept_exit',
  'accept4_exit',
  'redirect_sockops',
  'redirect_msg',
  'rx_netif_rx',
  'rx_gro_receive',
  'rx_receive_skb',
  'rx_tcp_probe',
  'rx_read',
  'tx_tcp_sendmsg',
  'tx_dev_queue',
  'tx_start_xmit',
  'tx_dev_xmit',
  'drop_kfree_skb',
  'tcp_reset_sent',
  'tcp_reset_recv',
  'tcp_retransmit',
]);

/** The table as ITEM -> [STATUS, DETAIL], checking its shape on the way. */
function parseTable(stdout: string): Map<string, [string, string]> {
  const lines = stdout.trimEnd().split('\n');
  assert.match(lines[0]!, /^ITEM\s+STATUS\s+DETAIL$/);
  const detailAt = lines[0]!.indexOf('DETAIL');
  const rows = new Map<string, [string, string]>();
  for (const line of lines.slice(1)) {
    const m = /^(.+?)\s+(yes|no)\s+(.*)$/.exec(line);
    assert.ok(m, `not a table row: ${line}`);
    assert.equal(line.indexOf(m[3]!), detailAt, `DETAIL column out of line: ${line}`);
    rows.set(m[1]!, [m[2]!, m[3]!]);
  }
  return rows;
}

/** Asserts each listed row's status and that its detail matches. */
function expectRows(rows: Map<string, [string, string]>, want: Record<string, [string, RegExp]>): void {
  for (const [item, [status, detail]] of Object.entries(want)) {
    const row = rows.get(item);
    assert.ok(row, `no row ${item}`);
    assert.equal(row[0], status, `${item}: ${row[1]}`);
    assert.match(row[1], detail, item);
  }
}

function loadedPrograms(): { id: number; name: string }[] {
  return JSON.parse(execFileSync('bpftool', ['prog', 'show', '--json'], { encoding: 'utf8' })) as { id: number; name: string }[];
}

/** Program ids some process holds (through a program or link descriptor). */
function heldPrograms(): Set<number> {
  const ids = new Set<number>();
  for (const pid of fs.readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    let fds: string[];
    try {
      fds = fs.readdirSync(`/proc/${pid}/fd`);
    } catch {
      continue; // exited meanwhile
    }
    for (const fd of fds) {
      try {
        const m = /^prog_id:\s*(\d+)$/m.exec(fs.readFileSync(`/proc/${pid}/fdinfo/${fd}`, 'utf8'));
        if (m) ids.add(Number(m[1]));
      } catch {
        /* closed meanwhile */
      }
    }
  }
  return ids;
}

/** Programs of ours loaded after `since` that no process holds: pinned, or
 * attached to a cgroup without a link. The kernel frees a released program
 * after an RCU grace period, so this waits a little for it to go. */
async function leftovers(since: number): Promise<string[]> {
  let left: string[] = [];
  for (let i = 0; i < 50; i++) {
    const held = heldPrograms();
    left = loadedPrograms()
      .filter((p) => p.id > since && OUR_PROGRAMS.has(p.name) && !held.has(p.id))
      .map((p) => `${p.name} (id ${p.id})`);
    if (!left.length) return left;
    await sleep(200);
  }
  return left;
}

/** Runs check as given, then asserts nothing of it stayed in the kernel. */
async function check(wrap: string[] = []): Promise<RunResult & { rows: Map<string, [string, string]> }> {
  const before = Math.max(0, ...loadedPrograms().map((p) => p.id));
  const r = await runCli(['check'], { wrap });
  assert.equal(r.stderr, '', 'nothing on stderr, no stack trace');
  assert.deepEqual(await leftovers(before), [], 'programs left in the kernel');
  const mount = cgroup2Mount()!;
  assert.deepEqual(
    fs.readdirSync(mount).filter((d) => d.startsWith('bpfnet-check-')),
    [],
    'cgroups left',
  );
  return { ...r, rows: parseTable(r.stdout) };
}

describe('check', function () {
  before(requireRoot);

  it("finds this machine's kernel facts by loading programs: tp_btf and every probe yes, kprobes and fentry no", async function () {
    const r = await check();
    expectRows(r.rows, {
      privileges: ['yes', /^root with CAP_BPF, CAP_PERFMON, CAP_NET_ADMIN, CAP_SYS_ADMIN, CAP_SYS_PTRACE$/],
      BTF: ['yes', /^\/sys\/kernel\/btf\/vmlinux$/],
      tracefs: ['yes', /^\/sys\/kernel\/tracing$/],
      bpffs: ['yes', /^\/sys\/fs\/bpf$/],
      'cgroup v2': ['yes', /^\/sys\/fs\/cgroup\/unified$/],
      tp_btf: ['yes', /^loads, attaches to inet_sock_set_state$/],
      tracepoint: ['yes', /^loads, attaches to syscalls\/sys_enter_getpid$/],
      raw_tp: ['yes', /^loads, attaches to sys_enter$/],
      kprobe: ['no', /^loads, but cannot attach: ENOENT .*; the kernel was built without kprobes/],
      kretprobe: ['no', /^loads, but cannot attach: ENOENT .*; the kernel was built without kprobes/],
      fentry: ['no', /^cannot load: EPERM \(Operation not permitted\): BPF program load failed$/],
      fexit: ['no', /^cannot load: EPERM \(Operation not permitted\): BPF program load failed$/],
      sockops: ['yes', /^loads \(not attached/],
      sk_msg: ['yes', /^loads \(not attached/],
      'sockhash map': ['yes', /^created$/],
      'ring buffer map': ['yes', /^created$/],
      ...Object.fromEntries(ALL_PROBES.map((p) => [`probe ${p}`, ['yes', /^loads and attaches$/]])),
      redirect: ['yes', /^loads, attaches to a sockhash and to a cgroup \(tried on an empty cgroup of its own\)$/],
      'run statistics': ['yes', /^can be turned on \(--enable-bpf-stats\)$/],
    });
    assert.equal(r.rows.get('kernel')![1], os.release());
    assert.equal(r.rows.size, 23);
    assert.equal(r.code, 0);
  });

  it('says no for privileges, loads and probes when unprivileged, with the fix, and exits 1', async function () {
    const r = await check(UNPRIVILEGED);
    expectRows(r.rows, {
      privileges: ['no', new RegExp(`^uid 65534 with no BPF capabilities: ${PRIVILEGE_FIX}$`)],
      tp_btf: ['no', new RegExp(`^cannot load: EPERM \\(Operation not permitted\\); ${PRIVILEGE_FIX}$`)],
      sockops: ['no', /^cannot load: EPERM/],
      'ring buffer map': ['no', /^cannot create: EPERM/],
      ...Object.fromEntries(
        PROBES.map((p) => [`probe ${p}`, ['no', new RegExp(`^cannot load tcp-lifecycle.bpf.o: EPERM \\(Operation not permitted\\); ${PRIVILEGE_FIX}$`)]]),
      ),
      'probe netstack': ['no', new RegExp(`^cannot load netstack.bpf.o: EPERM \\(Operation not permitted\\); ${PRIVILEGE_FIX}$`)],
      redirect: ['no', new RegExp(`^cannot load sock-redirect.bpf.o: EPERM \\(Operation not permitted\\).*; ${PRIVILEGE_FIX}$`)],
      'run statistics': ['no', /^cannot turn on: EPERM \(Operation not permitted\); --enable-bpf-stats needs CAP_SYS_ADMIN$/],
    });
    assert.equal([...r.rows.values()].filter(([status]) => status === 'yes').length, 5, 'only the kernel and mount rows');
    assert.equal(r.code, 1);
  });

  it('with CAP_BPF and CAP_PERFMON alone: every probe yes; the redirect and the run statistics name what they need', async function () {
    const r = await check(withCapabilities(['BPF', 'PERFMON']));
    const netAdmin = /; needs CAP_NET_ADMIN besides CAP_BPF and CAP_PERFMON$/;
    expectRows(r.rows, {
      privileges: ['yes', /^root with CAP_BPF, CAP_PERFMON$/],
      tp_btf: ['yes', /^loads, attaches to inet_sock_set_state$/],
      tracepoint: ['yes', /^loads, attaches/],
      'ring buffer map': ['yes', /^created$/],
      sockops: ['no', netAdmin],
      sk_msg: ['no', netAdmin],
      'sockhash map': ['no', netAdmin],
      ...Object.fromEntries(ALL_PROBES.map((p) => [`probe ${p}`, ['yes', /^loads and attaches$/]])),
      redirect: ['no', new RegExp(`^cannot load sock-redirect.bpf.o: EPERM .*${netAdmin.source}`)],
      'run statistics': ['no', /; --enable-bpf-stats needs CAP_SYS_ADMIN$/],
    });
    assert.equal(r.code, 0);
  });

  it('with CAP_NET_ADMIN too: the redirect attaches to a sockhash, and may attach to a cgroup', async function () {
    // the cgroup2 root here is mode 0555: without CAP_DAC_OVERRIDE no cgroup can be made to try the attach on
    const r = await check(withCapabilities(['BPF', 'PERFMON', 'NET_ADMIN']));
    expectRows(r.rows, {
      redirect: [
        'yes',
        /^loads, attaches to a sockhash; the cgroup attach was not tried \(no empty cgroup could be made for it: EACCES\), and CAP_NET_ADMIN, which it needs, is there$/,
      ],
      'sockhash map': ['yes', /^created$/],
      'run statistics': ['no', /needs CAP_SYS_ADMIN$/],
    });
  });

  it('says why every probe is down when the kernel has no BTF, and exits 1', async function () {
    const r = await check(HIDE_BTF);
    const needsBtf = new RegExp(`needs kernel BTF, and /sys/kernel/btf/vmlinux is missing: ${BTF_FIX}$`);
    expectRows(r.rows, {
      BTF: ['no', new RegExp(`^kernel BTF is missing \\(/sys/kernel/btf/vmlinux\\): ${BTF_FIX}`)],
      tp_btf: ['no', /^cannot load: ESRCH \(No such process\): failed to find valid kernel BTF; /],
      fentry: ['no', needsBtf],
      tracepoint: ['yes', /^loads, attaches/],
      raw_tp: ['yes', /^loads, attaches/],
      sockops: ['yes', /^loads/],
      ...Object.fromEntries(PROBES.map((p) => [`probe ${p}`, ['no', /^cannot load tcp-lifecycle.bpf.o: ESRCH .*; needs kernel BTF/]])),
      'probe netstack': ['no', /; needs kernel BTF/],
    });
    assert.equal(r.code, 1);
  });

  it('gives the tracefs fix for tracepoints and the accept probe when tracefs is not mounted', async function () {
    const r = await check(HIDE_TRACEFS);
    const fix = new RegExp(`${TRACEFS_FIX.replace(/\//g, '\\/')}$`);
    expectRows(r.rows, {
      tracefs: ['no', fix],
      tracepoint: ['no', /^loads, but cannot attach: tracefs is not mounted: /],
      tp_btf: ['yes', /^loads, attaches/],
      'probe connect': ['yes', /^loads and attaches$/],
      'probe accept': ['no', /^tracepoint\/syscalls\/sys_exit_accept\{,4\} needs tracefs, which is not mounted: mount -t tracefs/],
      'probe close': ['yes', /^loads and attaches, but without accept attribution/],
    });
    assert.equal(r.code, 0, 'connect and close can run');
  });
});

describe('check on Linux 6.1', function () {
  const root = path.resolve(__dirname, '..', '..', '..', '..');
  const kvmRun = [process.env.KVM_RUN, path.join(root, '..', 'shared', 'tools', 'kvm-run'), '/work/shared/tools/kvm-run'].find(
    (p): p is string => !!p && fs.existsSync(p),
  );

  it('finds kprobes, kretprobes, fentry and fexit working there', async function () {
    requireRoot();
    // emulated: ~4 s to boot, node and libbpf some 12 times slower
    this.timeout(300_000);
    assert.ok(kvmRun, 'kvm-run not found (../shared/tools/kvm-run); set KVM_RUN to its path');
    const child = spawn(kvmRun, ['--kernel-version', '6.1.0-56-amd64', '--timeout', '280', '--', process.execPath, CLI, 'check'], { cwd: root });
    const kill = onCleanup(`kvm-run ${child.pid}`, () => void child.kill('SIGKILL'));
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
    await kill();
    assert.equal(code, 0, `kvm-run check exited ${code}:\n${stdout}${stderr.slice(-2000)}`);
    const rows = parseTable(stdout);
    expectRows(rows, {
      kernel: ['yes', /^6\.1\./],
      'cgroup v2': ['yes', /^\/sys\/fs\/cgroup$/],
      ...Object.fromEntries(['tp_btf', 'tracepoint', 'raw_tp'].map((t) => [t, ['yes', /^loads, attaches to /]])),
      ...Object.fromEntries(['kprobe', 'kretprobe', 'fentry', 'fexit'].map((t) => [t, ['yes', /^loads, attaches to tcp_v4_connect$/]])),
      ...Object.fromEntries(ALL_PROBES.map((p) => [`probe ${p}`, ['yes', /^loads and attaches$/]])),
    });
    assert.equal([...rows.values()].filter(([status]) => status === 'no').length, 0, stdout);
  });
});
