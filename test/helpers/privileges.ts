// SPDX-License-Identifier: Apache-2.0
// Integration tests need root (BPF, namespaces). On CI (CI=true) a missing
// privilege fails the suite; elsewhere the suite says why and stops.
import { execFileSync } from 'node:child_process';

export function requireRoot(): void {
  if (process.getuid?.() === 0) return;
  throw new Error('integration tests need root (BPF programs, network namespaces): run them with sudo');
}

/** A command prefix that runs its command in a mount namespace where tracefs
 * is hidden (an empty tmpfs on /sys/kernel/tracing and /sys/kernel/debug), as
 * on a host that does not mount it. */
export const HIDE_TRACEFS = [
  'unshare',
  '-m',
  'sh',
  '-c',
  'mount -t tmpfs none /sys/kernel/tracing && { ! [ -d /sys/kernel/debug ] || mount -t tmpfs none /sys/kernel/debug; } && exec "$@"',
  'sh',
];

/** Every capability this kernel knows, as capsh names them. */
function allCapabilities(): string[] {
  const out = execFileSync('capsh', ['--print'], { encoding: 'utf8' });
  return /^Bounding set =(.*)$/m.exec(out)![1]!.split(',');
}

/** A command prefix that runs its command as root with exactly these
 * capabilities (Kubernetes' names: BPF, PERFMON...), as a container whose
 * securityContext drops ALL and adds them. */
export function withCapabilities(add: readonly string[]): string[] {
  const keep = new Set(add.map((c) => `cap_${c.toLowerCase()}`));
  const drop = allCapabilities().filter((c) => !keep.has(c));
  return ['capsh', `--drop=${drop.join(',')}`, '--', '-c', 'exec "$@"', 'sh'];
}
