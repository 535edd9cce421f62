// SPDX-License-Identifier: Apache-2.0
// The README's quick start where nothing is installed yet:
// scripts/test-fresh-debian builds a clean Debian 12 root with mmdebstrap
// (minbase: no Node.js, no curl, no compiler) and, chrooted there, runs
// ./scripts/run (it must set up, attach every probe, serve /metrics and exit
// 0 on SIGTERM), then ./scripts/test on two of its tests (the lint, and a
// counting test in a network namespace), after it has set up the test
// tools. It clones HEAD: uncommitted changes are not in it.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import path from 'node:path';
import { requireRoot } from '../helpers/privileges';

const ROOT = path.resolve(__dirname, '..', '..', '..', '..');
const TESTS = 'finds nothing in TypeScript|counts every outcome exactly';

describe('quick start on a fresh Debian 12', function () {
  it('installs Node.js 22 and the rest, runs the exporter and the tests, in a clean root without Node.js', async function () {
    requireRoot();
    // measured: 2 to 5 minutes, mostly downloads
    this.timeout(30 * 60_000);
    const r = await new Promise<{ code: number | null; out: string }>((resolve) => {
      const child = spawn('scripts/test-fresh-debian', ['--test', '--grep', TESTS], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      child.stdout.on('data', (d) => (out += d));
      child.stderr.on('data', (d) => (out += d));
      child.on('exit', (code) => resolve({ code, out }));
    });
    assert.match(r.out, /^setup: installing Node\.js 22\.\d+\.\d+ \(node-linux-\w+\) and npm /m, r.out.slice(-4000));
    assert.match(r.out, /^fresh-debian: \.\/scripts\/test took \d+ s: 2 passed, 0 failed$/m, r.out.slice(-4000));
    assert.match(r.out, /^fresh Debian 12: ok$/m, r.out.slice(-4000));
    assert.equal(r.code, 0);
  });
});
