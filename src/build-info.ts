// SPDX-License-Identifier: Apache-2.0
// What bpfnet_build_info says about the running build: its version
// (package.json), the git commit it was built from, and the versions of
// Node.js, the system libbpf and the kernel it runs on.
//   bpfnet_build_info{version="0.1.0",revision="d955124...",nodejs_version="22.15.0",libbpf_version="1.1",kernel_version="6.18.0"} 1
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { libbpfVersion } from './libbpf';
import { packageRoot, packageVersion } from './paths';

export interface BuildInfo {
  version: string;
  revision: string;
  nodejs_version: string;
  libbpf_version: string;
  kernel_version: string;
}

/** Where the build records its commit (scripts/record-revision.sh): an
 * installed package or an image has no .git to read. */
export const REVISION_FILE = path.join(packageRoot, 'build', 'js', 'src', 'REVISION');

const COMMIT = /^[0-9a-f]{40}(?:[0-9a-f]{24})?$/;

function readText(file: string): string | undefined {
  try {
    return fs.readFileSync(file, 'utf8').trim();
  } catch {
    return undefined;
  }
}

/** The commit HEAD names in the checkout at root, read from .git as git
 * does (a worktree's .git is a file naming its git directory; refs may be
 * loose or packed); undefined when there is no checkout. */
export function gitHead(root: string): string | undefined {
  let gitDir = path.join(root, '.git');
  const pointer = fs.existsSync(gitDir) && fs.statSync(gitDir).isFile() ? readText(gitDir) : undefined;
  if (pointer !== undefined) {
    const m = /^gitdir: (.+)$/.exec(pointer);
    if (!m) return undefined;
    gitDir = path.resolve(root, m[1]!);
  }
  const head = readText(path.join(gitDir, 'HEAD'));
  if (head === undefined) return undefined;
  if (COMMIT.test(head)) return head; // detached
  const ref = /^ref: (\S+)$/.exec(head)?.[1];
  if (!ref) return undefined;
  const common = readText(path.join(gitDir, 'commondir'));
  const commonDir = common === undefined ? gitDir : path.resolve(gitDir, common);
  for (const dir of [gitDir, commonDir]) {
    const loose = readText(path.join(dir, ref));
    if (loose !== undefined && COMMIT.test(loose)) return loose;
  }
  for (const line of (readText(path.join(commonDir, 'packed-refs')) ?? '').split('\n')) {
    const [commit, name] = line.split(' ');
    if (name === ref && commit && COMMIT.test(commit)) return commit;
  }
  return undefined;
}

/** The commit of this build: the checkout's HEAD when run from one, else
 * what the build recorded, else "unknown". */
export function revision(root = packageRoot): string {
  const recorded = readText(REVISION_FILE);
  return gitHead(root) ?? (recorded && COMMIT.test(recorded) ? recorded : 'unknown');
}

export function buildInfo(): BuildInfo {
  return {
    version: packageVersion(),
    revision: revision(),
    nodejs_version: process.versions.node,
    libbpf_version: libbpfVersion(),
    kernel_version: os.release(),
  };
}
