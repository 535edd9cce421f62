// SPDX-License-Identifier: Apache-2.0
// Which workload a cgroup v2 id is, from what the node itself shows: the
// cgroup tree (an id is the inode number of its directory) and kubelet's
// container log links (kubelet-layout.ts). Work is done on scans, never per
// event: a scrape that meets an id or a container it does not know rescans,
// at most once per scrape (250 ms); the cgroup tree is also rescanned every 30 s, to
// notice deleted cgroups, and the links directory is watched.
//   workload(4242n) -> { namespace: 'shop', pod: 'cart-7d9f', container: 'app', cgroup: '' }
//   workload(77n)   -> { namespace: '', ..., cgroup: 'system.slice/nginx.service' }
import fs from 'node:fs';
import path from 'node:path';
import type { Logger } from '../log';
import { parseCgroupPath, parseContainerLogName, podUidOfLogTarget, type LoggedContainer } from './kubelet-layout';

export interface Workload {
  namespace: string;
  pod: string;
  container: string;
  /** the runtime's container id, and the pod's uid; empty outside pods */
  containerId: string;
  podUid: string;
  /** the cgroup path relative to the cgroup2 mount ("/" for its root), for
   * sockets of no pod whose names are known; empty for those of pods */
  cgroup: string;
}

export const NO_WORKLOAD: Workload = Object.freeze({ namespace: '', pod: '', container: '', containerId: '', podUid: '', cgroup: '' });

export interface ResolverOptions {
  /** where cgroup v2 is mounted */
  cgroupMount: string;
  /** kubelet's container log links (/var/log/containers) */
  containersDir: string;
  log: Logger;
  /** ms; a clock tests can drive */
  now?: () => number;
  /** the names the kernel kept of a cgroup and its ancestors, its own first,
   * and its depth: for cgroups gone before any scan saw them */
  kernelNames?: (id: bigint) => { level: number; names: string[] } | undefined;
}

/** at most one rescan on misses in this long: about one per scrape */
const RESCAN_MIN_MS = 250;
/** How long after a cgroup is noticed gone its entries leave the kernel's
 * maps, their counts kept in userspace under their labels (tests shorten
 * it with _BPFNET_RETIRE_AFTER_MS). */
export const RETIRE_AFTER_MS = Number(process.env._BPFNET_RETIRE_AFTER_MS) || 60_000;
/** the tree is rescanned this often, to notice deleted cgroups */
const TREE_RESCAN_MS = Math.min(30_000, RETIRE_AFTER_MS / 2);
/** how long a deleted cgroup's path is kept, for what still counts under it */
const GONE_KEEP_MS = 15 * 60_000;

export class WorkloadResolver {
  private paths = new Map<bigint, string>();
  /** the containers' cgroups of pods, as of the last scan */
  private podCgroups: { rel: string; podUid: string; containerId: string }[] = [];
  /** cgroups no longer in the tree: their path, and since when they are gone */
  private readonly gone = new Map<bigint, { path: string; since: number }>();
  private containers = new Map<string, LoggedContainer>();
  private podNames = new Map<string, { namespace: string; pod: string }>();
  private readonly cache = new Map<bigint, Workload>();
  /** when a miss last made each be rescanned: misses are rate-limited among
   * themselves, so a scan just before (the start's, the watch's) does not
   * keep a new cgroup or container unknown */
  private treeMissScan = -Infinity;
  private linksMissScan = -Infinity;
  private watcher: fs.FSWatcher | undefined;
  private timer: NodeJS.Timeout | undefined;
  private debounce: NodeJS.Timeout | undefined;
  private readonly now: () => number;
  private readonly listeners: (() => void)[] = [];
  private changes = 0;

  constructor(private readonly o: ResolverOptions) {
    this.now = o.now ?? Date.now;
  }

  /** Scans both, then watches the links and rescans the tree periodically. */
  start(): void {
    this.scanTree();
    this.scanLinks();
    if (!fs.existsSync(this.o.containersDir)) {
      this.o.log.info('no kubelet container links: sockets of pods are labelled by cgroup path', { dir: this.o.containersDir });
    } else {
      try {
        this.watcher = fs.watch(this.o.containersDir, () => this.linksChanged());
        this.watcher.on('error', (err) => this.o.log.debug('cannot watch the kubelet container links', { err: err.message }));
      } catch (err) {
        this.o.log.debug('cannot watch the kubelet container links; rescanning on misses', { err: (err as Error).message });
      }
    }
    this.timer = setInterval(() => this.scanTree(), TREE_RESCAN_MS);
    this.timer.unref();
  }

  /** Calls fn after the links changed (a container came or went) and both
   * were rescanned. */
  onChange(fn: () => void): void {
    this.listeners.push(fn);
  }

  close(): void {
    this.watcher?.close();
    clearInterval(this.timer);
    clearTimeout(this.debounce);
  }

  /** Changes whenever what workload() answers may have: labels derived
   * from it are kept until then. */
  get version(): number {
    return this.changes;
  }

  /** The workload of a cgroup id; NO_WORKLOAD for one never seen. */
  workload(id: bigint): Workload {
    const cached = this.cache.get(id);
    if (cached) return cached;
    let rel = this.pathOf(id);
    if (rel === undefined && this.mayRescan(this.treeMissScan)) {
      this.treeMissScan = this.now();
      this.scanTree();
      rel = this.pathOf(id);
    }
    if (rel === undefined) rel = this.pathFromKernel(id);
    if (rel === undefined) {
      this.o.log.debug('no cgroup with this id', { id: String(id) });
      return NO_WORKLOAD;
    }
    const w = this.describe(rel);
    // a pod whose names are not linked yet is asked again at the next scrape
    if (w.cgroup === '' || !parseCgroupPath(rel)) this.cache.set(id, w);
    return w;
  }

  /** Since when (ms) the cgroup has been gone from the tree; undefined while it exists or was never seen. */
  goneSince(id: bigint): number | undefined {
    return this.gone.get(id)?.since;
  }

  /** The pods with names, each with a process of one of its containers
   * (the first container that holds one). */
  pods(): { podUid: string; namespace: string; pod: string; pid: number }[] {
    const out = new Map<string, { podUid: string; namespace: string; pod: string; pid: number }>();
    for (const c of this.podCgroups) {
      if (out.has(c.podUid)) continue;
      const names = this.containers.get(c.containerId) ?? this.podNames.get(c.podUid);
      if (!names) continue;
      const pid = firstPid(path.join(this.o.cgroupMount, c.rel));
      if (pid === undefined) continue;
      out.set(c.podUid, { podUid: c.podUid, namespace: names.namespace, pod: names.pod, pid });
    }
    return [...out.values()];
  }

  /** The path of a cgroup no scan saw, from the names the kernel kept (its
   * deepest levels, "..." in front of what they leave out); kept as gone. */
  private pathFromKernel(id: bigint): string | undefined {
    const k = this.o.kernelNames?.(id);
    if (!k || !k.names[0]) return undefined;
    const known = k.names.slice(0, Math.min(k.level, k.names.length)).reverse();
    const rel = (k.level > known.length ? ['...', ...known] : known).join('/');
    this.gone.set(id, { path: rel, since: this.now() });
    this.changes++;
    return rel;
  }

  private pathOf(id: bigint): string | undefined {
    return this.paths.get(id) ?? this.gone.get(id)?.path;
  }

  private mayRescan(last: number): boolean {
    return this.now() - last >= RESCAN_MIN_MS;
  }

  private describe(rel: string): Workload {
    const k = parseCgroupPath(rel);
    if (!k) return { ...NO_WORKLOAD, cgroup: rel };
    let c = k.containerId ? this.containers.get(k.containerId) : undefined;
    if (k.containerId && !c && this.mayRescan(this.linksMissScan)) {
      this.linksMissScan = this.now();
      this.scanLinks();
      c = this.containers.get(k.containerId);
    }
    const pod = c ?? this.podNames.get(k.podUid);
    if (!pod) return { ...NO_WORKLOAD, containerId: k.containerId, podUid: k.podUid, cgroup: rel };
    return { namespace: pod.namespace, pod: pod.pod, container: c?.container ?? '', containerId: k.containerId, podUid: k.podUid, cgroup: '' };
  }

  private scanTree(): void {
    const t = this.now();
    const found = new Map<bigint, string>();
    const walk = (dir: string, rel: string) => {
      let ino: bigint;
      let entries: fs.Dirent[];
      try {
        ino = fs.statSync(dir, { bigint: true }).ino;
        entries = fs.readdirSync(dir, { withFileTypes: true });
      } catch {
        return; // removed while walking
      }
      found.set(ino, rel || '/');
      for (const e of entries) if (e.isDirectory()) walk(path.join(dir, e.name), rel ? `${rel}/${e.name}` : e.name);
    };
    walk(this.o.cgroupMount, '');
    this.o.log.debug('scanned the cgroup tree', { cgroups: found.size, ms: this.now() - t });
    for (const [id, rel] of this.paths) if (!found.has(id)) this.gone.set(id, { path: rel, since: t });
    for (const id of found.keys()) this.gone.delete(id);
    for (const [id, g] of this.gone) {
      if (t - g.since <= GONE_KEEP_MS) continue;
      this.gone.delete(id);
      this.cache.delete(id);
      this.changes++;
    }
    // an id whose path changed (a reused inode number) is described anew
    for (const [id, rel] of found) {
      if (this.paths.get(id) === rel) continue;
      this.cache.delete(id);
      this.changes++;
    }
    this.paths = found;
    this.podCgroups = [];
    for (const rel of found.values()) {
      const k = parseCgroupPath(rel);
      if (k?.containerId) this.podCgroups.push({ rel, ...k });
    }
  }

  private scanLinks(): void {
    const containers = new Map<string, LoggedContainer>();
    const pods = new Map<string, { namespace: string; pod: string }>();
    let names: string[] = [];
    try {
      names = fs.readdirSync(this.o.containersDir);
    } catch {
      /* none (yet): no names */
    }
    for (const name of names) {
      const c = parseContainerLogName(name);
      if (!c) continue;
      containers.set(c.containerId, c);
      let target = '';
      try {
        target = fs.readlinkSync(path.join(this.o.containersDir, name));
      } catch {
        /* a plain file: no pod uid */
      }
      const uid = podUidOfLogTarget(target);
      if (uid) pods.set(uid, { namespace: c.namespace, pod: c.pod });
    }
    // what was resolved stays (a container id names one container for
    // good, and a deleted pod's counts keep their labels); only what was
    // not is looked up again
    if (!sameKeys(containers, this.containers) || !sameKeys(pods, this.podNames)) this.changes++;
    this.containers = containers;
    this.podNames = pods;
    this.o.log.debug('scanned the container links', { containers: containers.size, pods: pods.size });
  }

  private linksChanged(): void {
    clearTimeout(this.debounce);
    this.debounce = setTimeout(() => {
      this.scanLinks();
      this.scanTree();
      for (const fn of this.listeners) fn();
    }, 200);
    this.debounce.unref();
  }
}

function sameKeys(a: ReadonlyMap<string, unknown>, b: ReadonlyMap<string, unknown>): boolean {
  if (a.size !== b.size) return false;
  for (const k of a.keys()) if (!b.has(k)) return false;
  return true;
}

/** The first process in a cgroup; undefined if none (or it is gone). */
function firstPid(cgroupDir: string): number | undefined {
  let first: string | undefined;
  try {
    first = fs.readFileSync(path.join(cgroupDir, 'cgroup.procs'), 'utf8').split('\n')[0];
  } catch {
    return undefined;
  }
  return first ? Number(first) : undefined;
}
