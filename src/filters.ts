// SPDX-License-Identifier: Apache-2.0
// The --pid, --netns, --cgroup and --port filters: checked and resolved to the
// numbers BPF compares (tgid, namespace inode, cgroup id, port), then written
// to each object's filter maps (bpf/include/filter.h). They can be written
// again while programs run; connections are judged when they open.
import fs from 'node:fs';
import path from 'node:path';
import type { BpfObject } from './libbpf';
import { EnvironmentError, UsageError } from './errors';
import { cgroup2Mount } from './system';
import type { MapName } from './libbpf/binding';
import { TCP_LIFECYCLE } from './generated/tcp-lifecycle';
import type { NETSTACK } from './generated/netstack';

/** An object with the filter maps of bpf/include/filter.h. */
export type FilteredObject = typeof TCP_LIFECYCLE | typeof NETSTACK;

export interface FilterSpec {
  pids: readonly number[];
  netns: readonly string[];
  cgroups: readonly string[];
  ports: readonly number[];
}

export interface ResolvedFilters {
  pids: number[];
  netnsInodes: number[];
  cgroupIds: bigint[];
  ports: number[];
}

export const NO_FILTERS: ResolvedFilters = { pids: [], netnsInodes: [], cgroupIds: [], ports: [] };

const CGROUP2_SUPER_MAGIC = 0x63677270;

function resolvePid(pid: number): number {
  if (!Number.isInteger(pid) || pid <= 0) throw new UsageError(`--pid ${pid}: not a process id; give a positive integer`);
  if (!fs.existsSync(`/proc/${pid}`)) throw new UsageError(`--pid ${pid}: no such process; check the pid (ps -p ${pid})`);
  return pid;
}

/** A network namespace file: /run/netns/NAME or /proc/PID/ns/net. */
function resolveNetns(p: string): number {
  let st: fs.BigIntStats;
  try {
    st = fs.statSync(p, { bigint: true });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EACCES') {
      throw new EnvironmentError(`--netns ${p}: permission denied; another process's namespace needs CAP_SYS_PTRACE (or give its bind mount, /run/netns/NAME)`);
    }
    throw new UsageError(`--netns ${p}: no such file; give /run/netns/NAME or /proc/PID/ns/net`);
  }
  const own = fs.statSync('/proc/self/ns/net', { bigint: true });
  let link = '';
  try {
    link = fs.readlinkSync(p);
  } catch {
    /* a bind mount such as /run/netns/NAME is not a link */
  }
  if (st.dev !== own.dev || (link && !link.startsWith('net:'))) {
    throw new UsageError(`--netns ${p}: not a network namespace; give /run/netns/NAME or /proc/PID/ns/net`);
  }
  return Number(st.ino);
}

/** A cgroup v2 directory: an absolute path, or one relative to the cgroup2
 * mount; its path and id (the directory's inode). */
export function resolveCgroupDir(p: string, flag = '--cgroup'): { dir: string; id: bigint } {
  const mount = cgroup2Mount();
  const where = mount ?? 'the cgroup2 mount (none is mounted)';
  const dir = path.isAbsolute(p) && fs.existsSync(p) ? p : mount ? path.join(mount, p) : p;
  let st: fs.BigIntStats;
  try {
    st = fs.statSync(dir, { bigint: true });
  } catch {
    throw new UsageError(`${flag} ${p}: no such cgroup; give a directory under ${where}`);
  }
  if (!st.isDirectory() || Number(fs.statfsSync(dir).type) !== CGROUP2_SUPER_MAGIC) {
    throw new UsageError(`${flag} ${p}: not a cgroup v2 directory; give a directory under ${where}`);
  }
  return { dir: path.resolve(dir), id: st.ino };
}

export function resolvePort(port: number, flag = '--port'): number {
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new UsageError(`${flag} ${port}: not a port; give 1 to 65535`);
  return port;
}

/** Distinct values of a filter, refused past its map's size (the same in
 * every object: bpf/include/filter.h) before anything loads. */
function distinct<T>(flag: string, values: T[], map: keyof typeof TCP_LIFECYCLE.maps): T[] {
  const unique = [...new Set(values)];
  const max = TCP_LIFECYCLE.maps[map].maxEntries;
  if (unique.length > max) throw new UsageError(`${flag}: ${unique.length} distinct values; give at most ${max} (the size of its filter map)`);
  return unique;
}

export function resolveFilters(spec: FilterSpec): ResolvedFilters {
  return {
    pids: distinct('--pid', spec.pids.map(resolvePid), 'filter_pids'),
    netnsInodes: distinct('--netns', spec.netns.map(resolveNetns), 'filter_netns'),
    cgroupIds: distinct(
      '--cgroup',
      spec.cgroups.map((c) => resolveCgroupDir(c).id),
      'filter_cgroups',
    ),
    ports: distinct(
      '--port',
      spec.ports.map((p) => resolvePort(p)),
      'filter_ports',
    ),
  };
}

function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n);
  return b;
}

function u64(n: bigint): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(n);
  return b;
}

function u16(n: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16LE(n);
  return b;
}

/** Writes filters into an object's filter maps. New values are added before
 * the new switches are set and old values removed after, so a running program
 * sees the old filter, then briefly both sets, then the new one; never a
 * filter that matches nothing, nor everything, by accident. */
export function applyFilters(obj: BpfObject<FilteredObject>, f: ResolvedFilters): void {
  const sets: [MapName<FilteredObject>, Buffer[]][] = [
    ['filter_pids', f.pids.map(u32)],
    ['filter_netns', f.netnsInodes.map(u32)],
    ['filter_cgroups', f.cgroupIds.map(u64)],
    ['filter_ports', f.ports.map(u16)],
  ];
  for (const [name, keys] of sets) {
    for (const k of keys) obj.map(name).update(k, Buffer.from([1]));
  }

  const layout = obj.struct('filter_config');
  const value = Buffer.alloc(layout.size);
  value.writeUInt8(f.pids.length ? 1 : 0, layout.offset('pid'));
  value.writeUInt8(f.netnsInodes.length ? 1 : 0, layout.offset('netns'));
  value.writeUInt8(f.cgroupIds.length ? 1 : 0, layout.offset('cgroup'));
  value.writeUInt8(f.ports.length ? 1 : 0, layout.offset('port'));
  obj.map('filter_config').update(u32(0), value);

  for (const [name, keys] of sets) {
    const map = obj.map(name);
    const wanted = new Set(keys.map((k) => k.toString('hex')));
    for (const k of [...map.keys()]) if (!wanted.has(k.toString('hex'))) map.delete(k);
  }
}
