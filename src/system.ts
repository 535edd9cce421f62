// SPDX-License-Identifier: Apache-2.0
// Facts about this machine that several parts need: mounts and capabilities.
import fs from 'node:fs';

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

export const CAPABILITIES = { CAP_NET_ADMIN: 12, CAP_SYS_ADMIN: 21, CAP_SYS_RESOURCE: 24, CAP_PERFMON: 38, CAP_BPF: 39 } as const;

/** Effective capabilities of this process, from /proc/self/status. */
export function effectiveCapabilities(): bigint {
  const status = fs.readFileSync('/proc/self/status', 'utf8');
  const m = /^CapEff:\s*([0-9a-f]+)$/m.exec(status);
  return m ? BigInt('0x' + m[1]) : 0n;
}

export function hasCapability(cap: number, eff = effectiveCapabilities()): boolean {
  return ((eff >> BigInt(cap)) & 1n) === 1n;
}
