// SPDX-License-Identifier: Apache-2.0
// The house rules, as CI holds them: ESLint (typescript-eslint), Prettier and
// clang-format over every source file (npm run lint; npm run format fixes
// what the formatters find).
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import path from 'node:path';

const root = path.resolve(__dirname, '..', '..', '..', '..'); // build/js/test/unit -> .

describe('lint', function () {
  it('finds nothing in TypeScript (ESLint, Prettier) or C (clang-format)', function () {
    this.timeout(180_000);
    const r = spawnSync('npm', ['run', '--silent', 'lint'], { cwd: root, encoding: 'utf8' });
    assert.equal(r.status, 0, `npm run lint failed:\n${r.stdout}${r.stderr}`);
  });
});
