// SPDX-License-Identifier: Apache-2.0
// Where the compiled BPF objects are: build/bpf in a checkout, or the
// directory given by --bpf-dir (an installed image may keep them elsewhere).
import fs from 'node:fs';
import path from 'node:path';
import { UsageError } from './errors';

export const packageRoot = path.resolve(__dirname, '..', '..', '..'); // build/js/src -> .

export const DEFAULT_BPF_DIR = path.join(packageRoot, 'build', 'bpf');
let bpfDir = DEFAULT_BPF_DIR;

/** Uses the objects in dir; fails with the fix if there are none. */
export function setBpfDir(dir: string): void {
  if (dir.trim() === '') throw new UsageError('--bpf-dir is empty: give the directory holding tcp-lifecycle.bpf.o, or leave the flag out');
  const resolved = path.resolve(dir);
  if (!fs.existsSync(path.join(resolved, 'tcp-lifecycle.bpf.o'))) {
    throw new UsageError(
      resolved === DEFAULT_BPF_DIR
        ? `no BPF objects in ${resolved}: build them with "npm run build" (or scripts/setup)`
        : `--bpf-dir ${dir}: no BPF objects there; give the directory holding tcp-lifecycle.bpf.o`,
    );
  }
  bpfDir = resolved;
}

/** Whether --bpf-dir chose another directory than the build's own. */
export function bpfDirGiven(): boolean {
  return bpfDir !== DEFAULT_BPF_DIR;
}

export function bpfObjectPath(stem: string): string {
  return path.join(bpfDir, `${stem}.bpf.o`);
}

export function packageVersion(): string {
  return (JSON.parse(fs.readFileSync(path.join(packageRoot, 'package.json'), 'utf8')) as { version: string }).version;
}
