// SPDX-License-Identifier: Apache-2.0
// Kubernetes-like pods for tests, run by a real OCI runtime (runc): each
// container sits in the cgroup kubelet and its runtime would give it, each pod
// in its own network namespace behind a veth pair, and kubelet's
// /var/log/containers symlinks are made in a temporary directory.
//
// How runc places the processes (runc 1.1.5, Debian 12, on this hybrid host):
// - Without systemd (pid 1 is not systemd here) runc uses its cgroupfs
//   manager, so the `.slice`/`.scope` names of kubelet's systemd driver are
//   plain directory names: the helper computes the path, runc creates it.
// - On a hybrid host runc's v1 manager also joins the unified hierarchy
//   (/sys/fs/cgroup/unified, hardcoded in runc) at the same path, and does so
//   for `runc init` before it sends it the config, so the workload is in its
//   v2 cgroup from its first instruction: no hook is needed (checked with
//   /proc/PID/cgroup and with the cgroup id on the sockets it opens).
// - A relative cgroupsPath is taken relative to runc's own cgroup in every
//   hierarchy (memory:/<the session's cgroup>/..., 0::/...), so the tree stays
//   under the cgroups this process is in. On a cgroup v2 only host runc takes
//   it relative to the parent of its own cgroup instead, so there the path is
//   given absolute (not tried here).
// - runc creates the whole tree in every v1 hierarchy too but removes only
//   the container's own directory: the pod, QoS and node directories are
//   removed here, in every hierarchy.
// - process.rlimits is left out: raising RLIMIT_NOFILE above the hard limit
//   this process has is refused.
// A container's root is the host's own files, read-only (oci-bundle.ts), so
// the agents run inside as they do outside; it runs in the foreground (`runc
// run`, no terminal), its stdio being the pipes of the runc process.
//
// Network: one "node" network namespace per TestNode routes between pods
// (ip_forward on inside it only). Pod n gets 10.X.n.2/24 on its eth0, the
// node 10.X.n.1 on its end, the pod's default route; a remote host k gets
// 10.X.(199+k).2 likewise. X comes from this process's pid and the node's
// number, so concurrent test processes rarely use the same addresses (each
// in namespaces of their own anyway).
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { cgroup2Mount } from '../../src/system';
import { AgentProcess } from './agent';
import { onCleanup } from './cleanup';
import type { EchoSpec, ProxySpec, StreamSpec } from './echo-agent';
import { within } from './exporter';
import { createNetns, type Netns } from './netns';
import { HELPERS, NODE, writeBundle } from './oci-bundle';
import type { ConnectSpec, ServeSpec } from './traffic-agent';

export type Qos = 'guaranteed' | 'burstable' | 'besteffort';
export type CgroupDriver = 'systemd' | 'cgroupfs';
/** the container runtime kubelet talks to: names the container's cgroup */
export type Runtime = 'containerd' | 'crio' | 'docker';

export interface ContainerSpec {
  name: string;
  /** run inside the container; its stdout is read as JSON lines (the agents' messages) */
  argv: string[];
}

export interface PodSpec {
  namespace: string;
  name: string;
  qos: Qos;
  driver: CgroupDriver;
  /** default containerd */
  runtime?: Runtime;
  containers: ContainerSpec[];
}

/** A host outside the node, reachable from its pods through it. */
export interface RemoteHost {
  netns: Netns;
  address: string;
}

/** argv that runs a traffic agent (traffic-agent.ts) in a container. */
export function trafficAgent(spec: ServeSpec | ConnectSpec): string[] {
  return [NODE, path.join(HELPERS, 'traffic-agent.js'), JSON.stringify(spec)];
}

/** argv that runs an echo agent (echo-agent.ts) in a container. */
export function echoAgent(spec: EchoSpec | StreamSpec | ProxySpec): string[] {
  return [NODE, path.join(HELPERS, 'echo-agent.js'), JSON.stringify(spec)];
}

/** The pod's cgroup, relative to the node's, as kubelet names it. */
function podCgroup(driver: CgroupDriver, qos: Qos, uid: string): string {
  if (driver === 'cgroupfs') return qos === 'guaranteed' ? `kubepods/pod${uid}` : `kubepods/${qos}/pod${uid}`;
  const u = uid.replaceAll('-', '_');
  return qos === 'guaranteed' ? `kubepods.slice/kubepods-pod${u}.slice` : `kubepods.slice/kubepods-${qos}.slice/kubepods-${qos}-pod${u}.slice`;
}

/** The container's cgroup within its pod's, as its runtime names it. */
function containerCgroup(driver: CgroupDriver, runtime: Runtime, id: string): string {
  const prefix = { containerd: 'cri-containerd', crio: 'crio', docker: 'docker' }[runtime];
  if (driver === 'systemd') return `${prefix}-${id}.scope`;
  return runtime === 'crio' ? `crio-${id}` : id; // CRI-O's cgroupfs manager keeps its prefix
}

const sleepSync = (ms: number) => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);

/** This process's directories in the v1 hierarchies (none on a v2 only host). */
function ownV1CgroupDirs(): string[] {
  const own = new Map<string, string>();
  for (const line of fs.readFileSync('/proc/self/cgroup', 'utf8').trim().split('\n')) {
    const [, controllers, p] = /^\d+:([^:]*):(.*)$/.exec(line)!;
    if (controllers) own.set(controllers, p!);
  }
  const dirs = new Map<string, string>();
  for (const line of fs.readFileSync('/proc/self/mountinfo', 'utf8').trim().split('\n')) {
    const f = line.split(' ');
    const [fstype, , superOpts] = f.slice(f.indexOf('-') + 1);
    if (fstype !== 'cgroup') continue;
    const opts = superOpts!.split(',');
    const key = [...own.keys()].find((k) => k.split(',').every((c) => opts.includes(c)));
    if (key && !dirs.has(key)) dirs.set(key, path.join(f[4]!, path.relative(f[3]!, own.get(key)!)));
  }
  return [...dirs.values()];
}

/** Removes a cgroup directory and those below it, innermost first; a
 * directory still busy (its last process not yet gone) is tried again. */
function removeCgroupTree(dir: string): void {
  let entries: fs.Dirent[];
  try {
    entries = fs.readdirSync(dir, { withFileTypes: true });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return; // runc may have removed it meanwhile
    throw err;
  }
  for (const e of entries) if (e.isDirectory()) removeCgroupTree(path.join(dir, e.name));
  for (let i = 0; ; i++) {
    try {
      fs.rmdirSync(dir);
      return;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') return;
      if (code !== 'EBUSY' || i >= 500) throw err;
      sleepSync(20);
    }
  }
}

/** Kills every process in a v2 cgroup and below, and waits until they are gone. */
function killCgroup(dir: string): void {
  if (!fs.existsSync(dir)) return;
  fs.writeFileSync(path.join(dir, 'cgroup.kill'), '1');
  for (let i = 0; /populated 1/.test(fs.readFileSync(path.join(dir, 'cgroup.events'), 'utf8')); i++) {
    if (i >= 1500) throw new Error(`processes in ${dir} outlived SIGKILL`);
    sleepSync(20);
  }
}

/** A container of a pod: its first process, cgroup and log link. */
export class Container {
  /** the container's stdout as the agents' JSON messages; its stdin and
   * exit are the runc process's */
  readonly agent: AgentProcess;
  /** the container's first process, as the host sees it (inside it is 1) */
  pid = 0;

  constructor(
    readonly name: string,
    /** 64 hex digits, as containerd, CRI-O and Docker make them */
    readonly id: string,
    /** as /proc/PID/cgroup shows it ("0::" + cgroupPath), relative to the cgroup2 mount */
    readonly cgroupPath: string,
    /** the kubelet-style symlink: <containersDir>/<pod>_<namespace>_<container>-<id>.log */
    readonly logLink: string,
    child: ChildProcess,
    private readonly node: TestNode,
  ) {
    this.agent = new AgentProcess(child);
  }

  /** The cgroup's id, as BPF programs read it (the directory's inode number). */
  cgroupId(): number {
    return fs.statSync(path.join(cgroup2Mount()!, this.cgroupPath)).ino;
  }

  /** Kills the container's processes and removes the container (its cgroup too). */
  async stop(): Promise<void> {
    const child = this.agent.child;
    if (child.exitCode === null && child.signalCode === null) {
      this.node.runc(['kill', this.id, 'KILL'], true);
      // runc run returns once the container's first process is gone, after
      // removing the container; if runc had not made the container yet, the
      // kill found nothing
      await within(this.agent.exited, 30_000);
      child.kill('SIGKILL');
    }
    this.node.runc(['delete', '--force', this.id], true);
  }
}

export class Pod {
  readonly containers: Container[] = [];
  private gone = false;
  readonly destroy: () => Promise<void>;

  constructor(
    readonly spec: PodSpec,
    /** a v4 UUID, as the API server makes them */
    readonly uid: string,
    readonly netns: Netns,
    /** the pod IP */
    readonly address: string,
    /** the pod's cgroup, relative to the cgroup2 mount */
    readonly cgroupPath: string,
    /** <dir>/pods/<namespace>_<pod>_<uid>: the containers' log files */
    readonly logDir: string,
    private readonly node: TestNode,
  ) {
    this.destroy = onCleanup(`pod ${spec.namespace}/${spec.name}`, () => this.remove());
  }

  /** Stops the containers and removes the pod: cgroups, log links and files, netns. */
  async delete(): Promise<void> {
    await Promise.all(this.containers.map((c) => c.stop()));
    await this.destroy();
  }

  /** (for TestNode and cleanup) Kills what is left of the pod and removes it;
   * synchronous, so that it can run when the process exits. */
  remove(): void {
    if (this.gone) return;
    this.gone = true;
    this.node.removeCgroups(path.join(cgroup2Mount()!, this.cgroupPath), () => {
      for (const c of this.containers) this.node.runc(['delete', '--force', c.id], true);
    });
    for (const c of this.containers) fs.rmSync(c.logLink, { force: true });
    fs.rmSync(this.logDir, { recursive: true, force: true });
    fs.rmSync(this.node.bundles(this.uid), { recursive: true, force: true });
    this.netns.destroy().catch((err: Error) => process.stderr.write(`removing ${this.netns.name}: ${err.message}\n`));
  }
}

let nodes = 0;

/** A Kubernetes node of pods: a parent cgroup, a network namespace routing
 * between the pods, a runc state directory and a directory of log links, all
 * this test's and removed at cleanup. */
export class TestNode {
  /** the node's cgroup: an absolute directory under the cgroup2 mount */
  readonly cgroupRoot: string;
  /** kubelet's /var/log/containers, here */
  readonly containersDir: string;
  /** the node's network namespace: the pods' gateway */
  readonly netns: Netns;
  /** runc's state directory (its --root) for this node's containers */
  readonly runcRoot: string;
  readonly destroy: () => Promise<void>;
  private readonly dir: string;
  private readonly v1Roots: string[];
  private readonly octet: number;
  private readonly pods: Pod[] = [];
  private readonly remotes: Netns[] = [];

  private constructor(readonly name: string) {
    const mount = cgroup2Mount();
    if (!mount) throw new Error('no cgroup2 mount: pods need cgroup v2');
    const own = /^0::(.*)$/m.exec(fs.readFileSync('/proc/self/cgroup', 'utf8'))![1]!;
    this.cgroupRoot = path.join(mount, own, name);
    this.v1Roots = ownV1CgroupDirs().map((d) => path.join(d, name));
    this.runcRoot = `/run/bpfnet-test-runc-${process.pid}-${nodes}`;
    this.octet = 64 + ((process.pid * 4 + nodes) % 192);
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), `${name}-`));
    this.destroy = onCleanup(`node ${name}`, () => this.remove());
    fs.mkdirSync(this.cgroupRoot);
    this.containersDir = path.join(this.dir, 'containers');
    fs.mkdirSync(this.containersDir);
    this.netns = createNetns(name.replace(/^bpfnet-t\d+-/, ''));
    this.netns.sysctl('net.ipv4.ip_forward', 1);
  }

  static create(label = 'node'): TestNode {
    return new TestNode(`bpfnet-t${process.pid}-n${++nodes}-${label}`);
  }

  /** Creates the pod's netns and cgroups, starts its containers one by one and
   * resolves once each runs; the pod is removed at cleanup if not before. */
  async startPod(spec: PodSpec): Promise<Pod> {
    const n = this.pods.length + 1;
    if (n > 199) throw new Error('a TestNode has room for 199 pods');
    const uid = crypto.randomUUID();
    const podPath = path.join(this.cgroupRoot, podCgroup(spec.driver, spec.qos, uid));
    const netns = createNetns(`pod-${spec.name}`);
    const logDir = path.join(this.dir, 'pods', `${spec.namespace}_${spec.name}_${uid}`);
    const pod = new Pod(spec, uid, netns, `10.${this.octet}.${n}.2`, this.relative(podPath), logDir, this);
    this.pods.push(pod);
    try {
      this.link(netns, `pod${n}`, `10.${this.octet}.${n}`);
      for (const c of spec.containers) {
        const id = crypto.randomBytes(32).toString('hex');
        const cgroup = path.join(podPath, containerCgroup(spec.driver, spec.runtime ?? 'containerd', id));
        const logLink = path.join(this.containersDir, `${spec.name}_${spec.namespace}_${c.name}-${id}.log`);
        fs.mkdirSync(path.join(logDir, c.name), { recursive: true });
        fs.writeFileSync(path.join(logDir, c.name, '0.log'), '');
        fs.symlinkSync(path.join(logDir, c.name, '0.log'), logLink);
        const bundle = path.join(this.bundles(uid), id);
        writeBundle(bundle, {
          argv: c.argv,
          hostname: spec.name,
          netns: netns.path,
          // runc takes a relative path from its own cgroups; on a v2 only
          // host from the parent of its own, so there the path is absolute
          cgroupsPath: cgroup2Mount() === '/sys/fs/cgroup' ? this.relative(cgroup) : path.join(this.name, path.relative(this.cgroupRoot, cgroup)),
        });
        const child = spawn('runc', ['--root', this.runcRoot, 'run', '--bundle', bundle, '--pid-file', path.join(bundle, 'pid'), id], {
          stdio: ['pipe', 'pipe', 'pipe'],
        });
        const container = new Container(c.name, id, this.relative(cgroup), logLink, child, this);
        pod.containers.push(container);
        container.pid = await this.waitForPid(container, path.join(bundle, 'pid'));
      }
    } catch (err) {
      await Promise.all(pod.containers.map((c) => c.stop()));
      await pod.destroy();
      throw err;
    }
    return pod;
  }

  /** A host outside the node (another node, a database...) in a namespace of
   * its own behind a veth pair to the node. */
  addRemoteHost(label = 'remote'): RemoteHost {
    const k = this.remotes.length + 1;
    if (k > 56) throw new Error('a TestNode has room for 56 remote hosts');
    const netns = createNetns(label);
    this.remotes.push(netns);
    this.link(netns, `remote${k}`, `10.${this.octet}.${199 + k}`);
    return { netns, address: `10.${this.octet}.${199 + k}.2` };
  }

  /** Runs runc on this node's containers; returns its stdout. */
  runc(args: string[], ignoreFailure = false): string {
    try {
      return execFileSync('runc', ['--root', this.runcRoot, ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    } catch (err) {
      if (ignoreFailure) return '';
      throw err;
    }
  }

  /** (for Pod) Kills what runs in a cgroup of this node (v2, absolute) and
   * below, calls cleanup, removes the cgroup in every hierarchy, then its
   * parents up to the node's that are left empty. */
  removeCgroups(v2: string, cleanup: () => void): void {
    killCgroup(v2);
    cleanup();
    const rel = path.relative(this.cgroupRoot, v2);
    for (const root of [this.cgroupRoot, ...this.v1Roots]) {
      removeCgroupTree(path.join(root, rel));
      for (let d = path.dirname(path.join(root, rel)); d.startsWith(root + '/'); d = path.dirname(d)) {
        try {
          fs.rmdirSync(d);
        } catch {
          break; // another pod's, or gone
        }
      }
    }
  }

  private remove(): void {
    for (const pod of this.pods) pod.remove();
    this.removeCgroups(this.cgroupRoot, () => {
      for (const id of this.runc(['list', '--quiet'], true).split('\n').filter(Boolean)) this.runc(['delete', '--force', id], true);
    });
    fs.rmSync(this.runcRoot, { recursive: true, force: true });
    fs.rmSync(this.dir, { recursive: true, force: true });
    // the netns is missing if the constructor failed before making it
    for (const ns of [...this.remotes, this.netns]) ns?.destroy().catch((err: Error) => process.stderr.write(`removing ${ns.name}: ${err.message}\n`));
  }

  /** (for Pod) Where the OCI bundles of a pod's containers are. */
  bundles(uid: string): string {
    return path.join(this.dir, 'bundles', uid);
  }

  /** The path as /proc/PID/cgroup shows it, from an absolute one. */
  private relative(dir: string): string {
    return '/' + path.relative(cgroup2Mount()!, dir);
  }

  /** A veth pair from the node (hostIf, <net>.1/24) to ns (eth0, <net>.2/24,
   * its default route through the node). */
  private link(ns: Netns, hostIf: string, net: string): void {
    this.netns.run('ip', 'link', 'add', hostIf, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns.name);
    this.netns.run('ip', 'addr', 'add', `${net}.1/24`, 'dev', hostIf);
    this.netns.run('ip', 'link', 'set', hostIf, 'up');
    ns.run('ip', 'addr', 'add', `${net}.2/24`, 'dev', 'eth0');
    ns.run('ip', 'link', 'set', 'eth0', 'up');
    ns.run('ip', 'route', 'add', 'default', 'via', `${net}.1`);
  }

  /** The container's first process on the host, once runc has started it. */
  private async waitForPid(c: Container, pidFile: string): Promise<number> {
    const child = c.agent.child;
    let stderr = '';
    child.stderr!.on('data', (d) => (stderr += d));
    for (const deadline = Date.now() + 60_000; ;) {
      // runc writes the file whole and renames it
      if (fs.existsSync(pidFile)) return Number(fs.readFileSync(pidFile, 'utf8'));
      if (child.exitCode !== null || child.signalCode !== null) throw new Error(`runc run ${c.name} failed: ${stderr.trim()}`);
      if (Date.now() > deadline) throw new Error(`container ${c.name} did not start: ${stderr.trim()}`);
      await new Promise((r) => setTimeout(r, 10));
    }
  }
}
