// SPDX-License-Identifier: Apache-2.0
// Child cgroups (v2) for tests, never the root: processes are placed in them
// at start, and the cgroup is removed once its processes are gone.
import fs from 'node:fs';
import path from 'node:path';
import { cgroup2Mount } from '../../src/system';
import { onCleanup } from './cleanup';

let counter = 0;

export class TestCgroup {
  readonly path: string;
  readonly destroy: () => Promise<void>;

  /** A child of the cgroup2 root, or of parent (a TestCgroup or a
   * directory), named after label, or exactly name. */
  constructor(label: string, parent?: TestCgroup | string, name?: string) {
    const mount = cgroup2Mount();
    if (!mount) throw new Error('no cgroup2 mount: tests need cgroup v2');
    const parentDir = typeof parent === 'string' ? parent : (parent?.path ?? mount);
    this.path = path.join(parentDir, name ?? `bpfnet-t${process.pid}-${++counter}-${label}`);
    fs.mkdirSync(this.path);
    this.destroy = onCleanup(`cgroup ${this.path}`, () => {
      if (!fs.existsSync(this.path)) return; // removed with its parent
      for (const pid of fs.readFileSync(path.join(this.path, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean)) {
        try {
          process.kill(Number(pid), 'SIGKILL');
        } catch {
          /* already gone */
        }
      }
      // a killed process leaves the cgroup asynchronously
      for (let i = 0; i < 100; i++) {
        try {
          fs.rmdirSync(this.path);
          return;
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'EBUSY') throw err;
          Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 20);
        }
      }
      fs.rmdirSync(this.path);
    });
  }

  /** Wraps a command so that it runs inside this cgroup from its first instruction. */
  wrap(cmd: string, args: string[]): [string, string[]] {
    return ['sh', ['-c', `echo $$ > "${this.path}/cgroup.procs" && exec "$@"`, 'sh', cmd, ...args]];
  }
}
