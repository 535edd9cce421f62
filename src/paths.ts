// SPDX-License-Identifier: Apache-2.0
// Where the compiled BPF objects are: build/bpf in a checkout, or BPFNET_BPF_DIR.
import path from 'node:path';

const packageRoot = path.resolve(__dirname, '..', '..', '..'); // build/js/src -> .

export function bpfObjectPath(stem: string): string {
  const dir = process.env.BPFNET_BPF_DIR ?? path.join(packageRoot, 'build', 'bpf');
  return path.join(dir, `${stem}.bpf.o`);
}

export function packageVersion(): string {
  return (require(path.join(packageRoot, 'package.json')) as { version: string }).version;
}
