// SPDX-License-Identifier: Apache-2.0
// `bpfnet-exporter check`: a table of what this kernel supports, found by
// loading (and, where harmless, attaching then detaching) tiny programs from
// bpf/features.bpf.c and the real probes, never by reading version numbers:
// distributions backport features and compile others out. Every check that
// fails becomes a "no" row with the errno, libbpf's reason and the fix.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Registry } from 'prom-client';

import { NO_FILTERS } from './filters';
import { BPF_SK_MSG_VERDICT, BpfError, BpfObject, closeFd, enableRunTimeStats } from './libbpf';
import { Logger } from './log';
import { ScrapeFailures } from './metrics/validate';
import { bpfObjectPath } from './paths';
import type { ProbeStatus } from './component';
import { FEATURES } from './generated/features';
import { SOCK_REDIRECT } from './generated/sock-redirect';
import type { MapName, ProgramName } from './libbpf/binding';
import { COMPONENTS } from './probes/registry';
import { defaultOptions } from './options';
import {
  CAPABILITIES,
  cgroup2Mount,
  checkBtf,
  checkPrivileges,
  effectiveCapabilities,
  hasCapability,
  mountsOfType,
  STATS_CAPABILITY,
  TRACEFS_FIX,
  tracefsMount,
  VMLINUX_BTF,
} from './system';

interface Row {
  item: string;
  ok: boolean;
  detail: string;
}

/** One program of bpf/features.bpf.c per attach type. sockops and sk_msg are
 * only loaded: attached to a cgroup they would sit in this machine's own
 * connections, and loading already proves the kernel has the program type. */
type Features = typeof FEATURES;
const ATTACH_TYPES: readonly { item: string; program: ProgramName<Features>; attach: boolean }[] = [
  { item: 'tp_btf', program: 'feat_tp_btf', attach: true },
  { item: 'tracepoint', program: 'feat_tracepoint', attach: true },
  { item: 'raw_tp', program: 'feat_raw_tp', attach: true },
  { item: 'kprobe', program: 'feat_kprobe', attach: true },
  { item: 'kretprobe', program: 'feat_kretprobe', attach: true },
  { item: 'fentry', program: 'feat_fentry', attach: true },
  { item: 'fexit', program: 'feat_fexit', attach: true },
  { item: 'sockops', program: 'feat_sockops', attach: false },
  { item: 'sk_msg', program: 'feat_sk_msg', attach: false },
];

/** Maps of bpf/features.bpf.c, in the order libbpf creates them. */
const MAPS: readonly { item: string; map: MapName<Features> }[] = [
  { item: 'sockhash map', map: 'feat_sockhash' },
  { item: 'ring buffer map', map: 'feat_ringbuf' },
];

const MIN_KERNEL = [5, 15] as const;
const PRIVILEGE_FIX = 'run as root, or grant CAP_BPF and CAP_PERFMON';
/** Rows whose programs or maps need CAP_NET_ADMIN besides (socket maps and programs). */
const NET_ADMIN_ITEMS = ['sockops', 'sk_msg', 'sockhash map', 'redirect'];
const NET_ADMIN_FIX = 'needs CAP_NET_ADMIN besides CAP_BPF and CAP_PERFMON';

/** Prints the table; exit status 0 when at least one probe can run. */
export async function runCheck(out: NodeJS.WritableStream): Promise<number> {
  const env: [string, () => Row][] = [
    ['privileges', privileges],
    ['kernel', kernel],
    ['BTF', btf],
    ['tracefs', tracefs],
    ['bpffs', bpffs],
    ['cgroup v2', cgroup2],
  ];
  const rows = [...env.map(([item, check]) => guard(item, check)), ...attachTypes(), ...maps()];
  const probes = await probeRows();
  out.write(table([...rows, ...probes, redirectRow(), runStatsRow()]));
  return probes.some((r) => r.ok) ? 0 : 1;
}

/** A check that throws is a "no" row, never a stack trace. */
function guard(item: string, check: () => Row): Row {
  try {
    return check();
  } catch (err) {
    return { item, ok: false, detail: `cannot tell: ${why(err)}` };
  }
}

/** Who this process is and whether it may load BPF programs; what each
 * feature needs on top is found by trying it (redirectRow, runStatsRow). */
function privileges(): Row {
  const eff = effectiveCapabilities();
  const has = (['CAP_BPF', 'CAP_PERFMON', 'CAP_NET_ADMIN', 'CAP_SYS_ADMIN', 'CAP_SYS_PTRACE'] as const).filter((c) => hasCapability(CAPABILITIES[c], eff));
  let ok = true;
  try {
    checkPrivileges(); // the exporter's own rule, so check and run agree
  } catch {
    ok = false;
  }
  const who = `${process.getuid?.() === 0 ? 'root' : `uid ${process.getuid?.()}`} with ${has.length ? has.join(', ') : 'no BPF capabilities'}`;
  return { item: 'privileges', ok, detail: ok ? who : `${who}: ${PRIVILEGE_FIX}` };
}

function kernel(): Row {
  const release = os.release();
  const [major = 0, minor = 0] = release.split(/[.-]/).map(Number);
  const ok = major > MIN_KERNEL[0] || (major === MIN_KERNEL[0] && minor >= MIN_KERNEL[1]);
  const need = `the probes need ${MIN_KERNEL.join('.')}+ (tp_btf, bpf_skc_to_tcp_sock, BPF compare-and-exchange, a socket's cgroup as 5.15 keeps it)`;
  return { item: 'kernel', ok, detail: ok ? `${release}` : `${release}: ${need}; the rows below say what loads` };
}

function btf(): Row {
  try {
    checkBtf();
  } catch (err) {
    return { item: 'BTF', ok: false, detail: (err as Error).message };
  }
  return { item: 'BTF', ok: true, detail: VMLINUX_BTF };
}

function tracefs(): Row {
  const at = tracefsMount();
  if (at) return { item: 'tracefs', ok: true, detail: at };
  return {
    item: 'tracefs',
    ok: false,
    detail: `not mounted at /sys/kernel/tracing or /sys/kernel/debug/tracing (classic tracepoints need it): ${TRACEFS_FIX}`,
  };
}

function bpffs(): Row {
  if (mountsOfType('bpf').includes('/sys/fs/bpf')) return { item: 'bpffs', ok: true, detail: '/sys/fs/bpf' };
  return { item: 'bpffs', ok: false, detail: 'not mounted at /sys/fs/bpf (pinning needs it): mount -t bpf bpf /sys/fs/bpf' };
}

function cgroup2(): Row {
  const at = cgroup2Mount();
  if (at) return { item: 'cgroup v2', ok: true, detail: at };
  return {
    item: 'cgroup v2',
    ok: false,
    detail: 'no cgroup2 mount in /proc/mounts (--cgroup, sockops and sk_msg need one): mount -t cgroup2 none /sys/fs/cgroup',
  };
}

/** Opens bpf/features.bpf.o with only `program` to load (none: no
 * program) and only `map` to create (none: every map), loads it, runs use
 * on it and closes it, whatever happens. No program uses the maps, so a
 * program is tried without them: a sockhash needs CAP_NET_ADMIN, which the
 * tracing programs do not. */
function withFeatures<T>(program: ProgramName<Features> | undefined, use: (obj: BpfObject<Features>) => T, map?: MapName<Features>): T {
  const obj = BpfObject.open(bpfObjectPath(FEATURES.file), FEATURES);
  try {
    for (const p of obj.programs()) p.autoload = p.name === program;
    for (const { map: m } of MAPS) obj.setAutocreate(m, program === undefined && (map === undefined || m === map));
    obj.load();
    return use(obj);
  } finally {
    obj.close();
  }
}

function attachTypes(): Row[] {
  return ATTACH_TYPES.map(({ item, program, attach }) => {
    let loaded = false;
    try {
      return withFeatures(program, (obj) => {
        loaded = true;
        const prog = obj.program(program);
        if (!attach) return { item, ok: true, detail: "loads (not attached: it would see this machine's own connections)" };
        if (prog.section.startsWith('tracepoint/') && !tracefsMount()) {
          return { item, ok: false, detail: `loads, but cannot attach: tracefs is not mounted: ${TRACEFS_FIX}` };
        }
        const target = prog.section.slice(prog.section.indexOf('/') + 1);
        prog.attach().destroy();
        return { item, ok: true, detail: `loads, attaches to ${target}` };
      });
    } catch (err) {
      const phase = loaded ? 'loads, but cannot attach' : 'cannot load';
      return { item, ok: false, detail: withHint(`${phase}: ${why(err)}`, item) };
    }
  });
}

/** Each map of the features object, created on its own. */
function maps(): Row[] {
  return MAPS.map(({ item, map }) => {
    try {
      withFeatures(undefined, () => undefined, map);
      return { item, ok: true, detail: 'created' };
    } catch (err) {
      return { item, ok: false, detail: withHint(`cannot create: ${why(err)}`, item) };
    }
  });
}

/** Starts each probe group as the exporter does (load, attach) on a
 * throwaway registry, reads what it says about each probe, and closes it. */
async function probeRows(): Promise<Row[]> {
  const log = new Logger('error', 'check', () => {});
  const registry = new Registry();
  const ctx = { log, filters: NO_FILTERS, registry, failures: new ScrapeFailures(registry, log) };
  const rows: Row[] = [];
  // the probes only: the redirect is loaded, never attached, by redirectRow
  for (const group of COMPONENTS.filter((c) => c.probes.length)) {
    let status: ReadonlyMap<string, ProbeStatus>;
    try {
      // every probe of the component, with the defaults
      const running = group.start({ ...ctx, options: group.select(defaultOptions(group.probes)) });
      status = new Map(running.status);
      await running.close();
    } catch (err) {
      status = new Map(group.probes.map((p) => [p, { up: false, reason: why(err) }]));
    }
    rows.push(
      ...group.probes.map((probe) => {
        const s = status.get(probe) ?? { up: false, reason: 'not started' };
        const item = `probe ${probe}`;
        if (!s.up) return { item, ok: false, detail: withHint(tidyReason(s.reason ?? 'down'), item) };
        const degraded = probe === 'close' && status.get('accept')?.up === false;
        return {
          item,
          ok: true,
          detail: degraded ? 'loads and attaches, but without accept attribution: --pid cannot filter closes of accepted connections' : 'loads and attaches',
        };
      }),
    );
  }
  return rows;
}

/** The socket redirect, tried as the exporter attaches it: sk_msg on its
 * own fresh sockhash, sockops on a new empty child cgroup (no process is in
 * it, so no connection of this machine meets it); both undone at once. */
function redirectRow(): Row {
  const item = 'redirect';
  let step = 'load sock-redirect.bpf.o';
  let cgroup: string | undefined;
  try {
    const obj = BpfObject.open(bpfObjectPath(SOCK_REDIRECT.file), SOCK_REDIRECT);
    try {
      obj.load();
      const mount = cgroup2Mount();
      if (!mount) return { item, ok: false, detail: 'loads, but there is no cgroup v2 mount to attach to: mount -t cgroup2 none /sys/fs/cgroup' };
      step = 'attach sk_msg to a sockhash';
      const socks = obj.map('redirect_socks').fd;
      obj.program('redirect_msg').attachToMap(socks, BPF_SK_MSG_VERDICT, 'a sockhash');
      obj.program('redirect_msg').detachFromMap(socks, BPF_SK_MSG_VERDICT, 'a sockhash');
      step = 'attach sockops to a cgroup';
      try {
        cgroup = fs.mkdtempSync(path.join(mount, 'bpfnet-check-'));
      } catch (err) {
        // a container's read-only cgroup mount, or no CAP_DAC_OVERRIDE on a 0555 root
        const code = (err as NodeJS.ErrnoException).code ?? String(err);
        const has = hasCapability(CAPABILITIES.CAP_NET_ADMIN);
        return {
          item,
          ok: has,
          detail: `loads, attaches to a sockhash; the cgroup attach was not tried (no empty cgroup could be made for it: ${code})${has ? ', and CAP_NET_ADMIN, which it needs, is there' : `; ${NET_ADMIN_FIX}`}`,
        };
      }
      const fd = fs.openSync(cgroup, 'r');
      try {
        obj.program('redirect_sockops').attachCgroup(fd, cgroup).destroy();
      } finally {
        fs.closeSync(fd);
      }
    } finally {
      obj.close();
    }
    return { item, ok: true, detail: 'loads, attaches to a sockhash and to a cgroup (tried on an empty cgroup of its own)' };
  } catch (err) {
    return { item, ok: false, detail: withHint(`cannot ${step}: ${why(err)}`, item) };
  } finally {
    if (cgroup) fs.rmdirSync(cgroup);
  }
}

/** --enable-bpf-stats, tried: the statistics are on while the descriptor is open. */
function runStatsRow(): Row {
  const item = 'run statistics';
  try {
    closeFd(enableRunTimeStats());
    return { item, ok: true, detail: 'can be turned on (--enable-bpf-stats)' };
  } catch (err) {
    const denied = /\bEPERM\b/.test(why(err)) ? `; --enable-bpf-stats needs ${STATS_CAPABILITY}` : '';
    return { item, ok: false, detail: `cannot turn on: ${why(err)}${denied}` };
  }
}

/** The errno and libbpf's line that says why, without the object's path. */
function why(err: unknown): string {
  return err instanceof BpfError ? tidyLine(err.reason()) : String((err as Error)?.message ?? err);
}

/** Drops the strerror-like tail libbpf adds to some lines. */
function tidyLine(line: string): string {
  return line.replace(/: [A-Z][a-z ]+$/, '');
}

/** The fix, where a missing privilege, BTF or kprobe support explains a failure. */
function withHint(detail: string, item: string): string {
  const hints: string[] = [];
  if (/\bEPERM\b|EACCES/.test(detail) && !privileges().ok) hints.push(PRIVILEGE_FIX);
  else if (/\bEPERM\b/.test(detail) && NET_ADMIN_ITEMS.includes(item) && !hasCapability(CAPABILITIES.CAP_NET_ADMIN)) hints.push(NET_ADMIN_FIX);
  if (!fs.existsSync(VMLINUX_BTF) && /^(probe |tp_btf|fentry|fexit)/.test(item)) {
    hints.push(`needs kernel BTF, and ${VMLINUX_BTF} is missing: run a kernel built with CONFIG_DEBUG_INFO_BTF=y`);
  }
  if (/^k(ret)?probe$/.test(item) && detail.startsWith('loads, but') && !fs.existsSync('/sys/bus/event_source/devices/kprobe')) {
    const at = tracefsMount();
    if (!at) hints.push(`no kprobe PMU, and libbpf's fallback needs tracefs: ${TRACEFS_FIX}`);
    else if (!fs.existsSync(`${at}/kprobe_events`)) hints.push('the kernel was built without kprobes (CONFIG_KPROBES, CONFIG_KPROBE_EVENTS)');
  }
  return hints.length ? `${detail}; ${hints.join('; ')}` : detail;
}

/** A probe's reason for being down, as the exporter words it for /readyz
 * ("OP: ERRNO (text): libbpf's line"), told as the other rows are. */
function tidyReason(reason: string): string {
  const m = /^(.*?: [A-Z][A-Z0-9_]+ \([^)]*\))(?:: (.*))?$/.exec(reason);
  if (!m) return reason;
  const head = m[1]!.replace(/^load [\w-]+: load BPF object \S*?([^/\s]+\.bpf\.o):/, 'cannot load $1:');
  return m[2] ? `${head}: ${tidyLine(m[2])}` : head;
}

function table(rows: readonly Row[]): string {
  const head = { item: 'ITEM', ok: 'STATUS', detail: 'DETAIL' };
  const width = Math.max(head.item.length, ...rows.map((r) => r.item.length));
  const line = (item: string, status: string, detail: string) => `${item.padEnd(width)}  ${status.padEnd(6)}  ${detail}`.trimEnd() + '\n';
  return line(head.item, head.ok, head.detail) + rows.map((r) => line(r.item, r.ok ? 'yes' : 'no', r.detail)).join('');
}
