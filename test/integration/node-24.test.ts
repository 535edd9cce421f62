// SPDX-License-Identifier: Apache-2.0
// The other supported Node.js: the suite runs on 22 (what scripts/setup
// installs); here the unit tests, and the exporter started, scraped (promtool
// included) and stopped, run again on Node.js 24, fetched as setup fetches 22
// (scripts/install-node 24). NODE_MAJOR=24 ./scripts/test runs everything on 24.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import path from 'node:path';
import { requireRoot } from '../helpers/privileges';

const ROOT = path.resolve(__dirname, '..', '..', '..', '..');
const BIN = path.join(ROOT, '.node', '24', 'bin');

function run(command: string, args: string[], env: NodeJS.ProcessEnv = process.env): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    const child = spawn(command, args, { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (out += d));
    child.on('exit', (code) => resolve({ code, out }));
  });
}

describe('Node.js 24', function () {
  it('passes the unit tests, serves metrics promtool accepts and stops cleanly on Node.js 24', async function () {
    requireRoot();
    this.timeout(10 * 60_000);
    const install = await run('scripts/install-node', ['24']);
    assert.equal(install.code, 0, install.out);
    const node = path.join(BIN, 'node');
    assert.match((await run(node, ['--version'])).out, /^v24\./);
    // (npm and npx of the tests, such as the lint's, from 24 as well)
    const env = { ...process.env, PATH: `${BIN}:${process.env.PATH}` };
    const files = ['build/js/test/unit/**/*.test.js', 'build/js/test/integration/exposition.test.js', 'build/js/test/integration/cli.test.js'];
    const r = await run(node, [path.join(ROOT, 'node_modules', 'mocha', 'bin', 'mocha.js'), ...files], env);
    const summary = /^(\d+) passed, (\d+) failed$/m.exec(r.out);
    assert.ok(summary, `no test summary from Node.js 24:\n${r.out.slice(-3000)}`);
    assert.equal(summary[2], '0', r.out.slice(-6000));
    assert.ok(Number(summary[1]) > 70, summary[0]);
    assert.equal(r.code, 0);
  });
});
