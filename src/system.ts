// SPDX-License-Identifier: Apache-2.0
// Facts about this machine that several parts need: mounts, capabilities,
// and whether BPF programs can be loaded here at all.
import fs from 'node:fs';
import { EnvironmentError } from './errors';

/** Mount points whose visible (topmost) file system is of this type, from
 * /proc/mounts; a later mount on the same point hides an earlier one. */
export function mountsOfType(fsType: string): string[] {
  let text: string;
  try {
    text = fs.readFileSync('/proc/mounts', 'utf8');
  } catch {
    return [];
  }
  const top = new Map<string, string>();
  for (const line of text.split('\n')) {
    const f = line.split(' ');
    if (f.length > 2) top.set(f[1]!.replace(/\\040/g, ' '), f[2]!);
  }
  return [...top].filter(([, type]) => type === fsType).map(([point]) => point);
}

/** The cgroup v2 mount: /sys/fs/cgroup on unified hosts, often
 * /sys/fs/cgroup/unified on hybrid ones; undefined if there is none. */
export function cgroup2Mount(): string | undefined {
  const mounts = mountsOfType('cgroup2');
  return mounts.includes('/sys/fs/cgroup') ? '/sys/fs/cgroup' : mounts[0];
}

/** Where tracefs is, as libbpf looks for it; undefined if not mounted. Classic
 * tracepoints (perf events) need it; tp_btf and raw tracepoints do not. */
export function tracefsMount(): string | undefined {
  const mounts = mountsOfType('tracefs');
  return ['/sys/kernel/tracing', '/sys/kernel/debug/tracing'].find((p) => mounts.includes(p));
}

export const TRACEFS_FIX = 'mount -t tracefs nodev /sys/kernel/tracing';

export const CAPABILITIES = { CAP_NET_ADMIN: 12, CAP_SYS_PTRACE: 19, CAP_SYS_ADMIN: 21, CAP_PERFMON: 38, CAP_BPF: 39 } as const;

/** Effective capabilities of this process, from /proc/self/status. */
export function effectiveCapabilities(): bigint {
  const status = fs.readFileSync('/proc/self/status', 'utf8');
  const m = /^CapEff:\s*([0-9a-f]+)$/m.exec(status);
  return m ? BigInt('0x' + m[1]) : 0n;
}

export function hasCapability(cap: number, eff = effectiveCapabilities()): boolean {
  return ((eff >> BigInt(cap)) & 1n) === 1n;
}

export const VMLINUX_BTF = '/sys/kernel/btf/vmlinux';

/** Fails with one clear line if this process cannot load tracing programs. */
export function checkPrivileges(): void {
  const eff = effectiveCapabilities();
  const admin = hasCapability(CAPABILITIES.CAP_SYS_ADMIN, eff);
  const bpf = hasCapability(CAPABILITIES.CAP_BPF, eff) && hasCapability(CAPABILITIES.CAP_PERFMON, eff);
  if (!admin && !bpf) {
    throw new EnvironmentError('not permitted to load BPF programs: run as root, or grant CAP_BPF and CAP_PERFMON');
  }
}

/** What BPF_ENABLE_STATS (--enable-bpf-stats) needs. */
export const STATS_CAPABILITY = 'CAP_SYS_ADMIN';

/** Fails with one line naming the capability unless the kernel's run time
 * statistics can be turned on. */
export function checkStatsPrivilege(): void {
  if (!hasCapability(CAPABILITIES[STATS_CAPABILITY])) {
    throw new EnvironmentError(`--enable-bpf-stats needs ${STATS_CAPABILITY} (BPF_ENABLE_STATS): grant it, or leave the flag out`);
  }
}

export function checkBtf(): void {
  if (!fs.existsSync(VMLINUX_BTF)) {
    throw new EnvironmentError(
      `kernel BTF is missing (${VMLINUX_BTF}): run a kernel built with CONFIG_DEBUG_INFO_BTF=y (Debian 11+, Ubuntu 20.10+, RHEL 8.2+)`,
    );
  }
}

/** This process's open-file limit (the soft RLIMIT_NOFILE, which Node.js
 * raises to the hard one at start); undefined if /proc does not say. */
export function openFileLimit(): number | undefined {
  try {
    const m = /^Max open files\s+(\d+)/m.exec(fs.readFileSync('/proc/self/limits', 'utf8'));
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}
