// SPDX-License-Identifier: Apache-2.0
// OCI bundles (config.json and a root) for the containers of pods.ts, without
// images: the root is an empty directory on which the host's /usr and /etc
// (and /bin, /lib... as the host has them), the Node.js binary's directory and
// this checkout are bind-mounted read-only, at the same paths, so a command
// runs inside as it does outside.
import fs from 'node:fs';
import path from 'node:path';

/** the Node.js binary the tests run on, which runs the agents in containers too */
export const NODE = fs.realpathSync(process.execPath);
/** the compiled test helpers (the agents' scripts) */
export const HELPERS = fs.realpathSync(__dirname);
const CHECKOUT = path.resolve(HELPERS, '../../../..');

export interface BundleSpec {
  argv: string[];
  hostname: string;
  /** the network namespace to join (a /run/netns path) */
  netns: string;
  /** linux.cgroupsPath: relative to runc's own cgroups, or absolute */
  cgroupsPath: string;
}

/** Writes a bundle into dir (made if missing). */
export function writeBundle(dir: string, spec: BundleSpec): void {
  const rootfs = path.join(dir, 'rootfs');
  fs.mkdirSync(rootfs, { recursive: true });
  const binds = ['/usr', '/etc'];
  for (const d of ['bin', 'sbin', 'lib', 'lib32', 'lib64', 'libx32']) {
    const st = fs.lstatSync(`/${d}`, { throwIfNoEntry: false });
    if (st?.isSymbolicLink()) fs.symlinkSync(fs.readlinkSync(`/${d}`), path.join(rootfs, d));
    else if (st?.isDirectory()) binds.push(`/${d}`);
  }
  for (const d of [path.dirname(NODE), CHECKOUT]) if (!binds.some((b) => d === b || d.startsWith(b + '/'))) binds.push(d);
  // runc spec's defaults
  const caps = ['CAP_AUDIT_WRITE', 'CAP_KILL', 'CAP_NET_BIND_SERVICE'];
  const config = {
    ociVersion: '1.0.2',
    process: {
      terminal: false,
      user: { uid: 0, gid: 0 },
      args: spec.argv,
      env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', 'HOME=/tmp'],
      cwd: '/',
      capabilities: { bounding: caps, effective: caps, permitted: caps },
      // no rlimits: raising RLIMIT_NOFILE above this process's hard limit is refused
      noNewPrivileges: true,
    },
    root: { path: rootfs, readonly: true },
    hostname: spec.hostname.slice(0, 63),
    mounts: [
      { destination: '/proc', type: 'proc', source: 'proc' },
      { destination: '/dev', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'strictatime', 'mode=755', 'size=65536k'] },
      { destination: '/dev/shm', type: 'tmpfs', source: 'shm', options: ['nosuid', 'noexec', 'nodev', 'mode=1777', 'size=65536k'] },
      { destination: '/tmp', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'nodev', 'mode=1777'] },
      ...binds.map((d) => ({ destination: d, type: 'bind', source: d, options: ['rbind', 'ro', 'nosuid', 'nodev'] })),
    ],
    linux: {
      cgroupsPath: spec.cgroupsPath,
      namespaces: [{ type: 'pid' }, { type: 'ipc' }, { type: 'uts' }, { type: 'mount' }, { type: 'network', path: spec.netns }],
      resources: { devices: [{ allow: false, access: 'rwm' }] },
      maskedPaths: ['/proc/acpi', '/proc/kcore', '/proc/keys', '/proc/latency_stats', '/proc/timer_list', '/proc/sched_debug', '/proc/scsi'],
      readonlyPaths: ['/proc/bus', '/proc/fs', '/proc/irq', '/proc/sys', '/proc/sysrq-trigger'],
    },
  };
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(config));
}
