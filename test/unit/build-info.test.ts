// SPDX-License-Identifier: Apache-2.0
// The commit of a checkout, read from .git as git itself resolves HEAD: a
// branch's loose ref, a packed one, a detached HEAD, a linked worktree;
// nothing when there is no checkout. Checked against git rev-parse HEAD.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { gitHead } from '../../src/build-info';

describe('build revision', function () {
  let dir: string;
  const git = (cwd: string, ...args: string[]) =>
    execFileSync('git', ['-c', 'user.name=t', '-c', 'user.email=t@example.org', ...args], { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim();

  before(function () {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bpfnet-git-'));
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('reads HEAD as git does: loose, packed, detached, in a linked worktree; nothing without .git', function () {
    const repo = path.join(dir, 'repo');
    fs.mkdirSync(repo);
    assert.equal(gitHead(repo), undefined);
    git(repo, 'init', '-q', '-b', 'main');
    assert.equal(gitHead(repo), undefined, 'no commit yet');
    git(repo, 'commit', '-q', '--allow-empty', '-m', 'one');
    assert.equal(gitHead(repo), git(repo, 'rev-parse', 'HEAD'));
    git(repo, 'commit', '-q', '--allow-empty', '-m', 'two');
    git(repo, 'pack-refs', '--all');
    assert.ok(!fs.existsSync(path.join(repo, '.git', 'refs', 'heads', 'main')), 'packed');
    assert.equal(gitHead(repo), git(repo, 'rev-parse', 'HEAD'));
    const tree = path.join(dir, 'tree');
    git(repo, 'worktree', 'add', '-q', '-b', 'other', tree);
    git(tree, 'commit', '-q', '--allow-empty', '-m', 'three');
    assert.equal(gitHead(tree), git(tree, 'rev-parse', 'HEAD'));
    assert.notEqual(gitHead(tree), gitHead(repo));
    git(repo, 'checkout', '-q', '--detach', 'HEAD~1');
    assert.equal(gitHead(repo), git(repo, 'rev-parse', 'HEAD'));
  });
});
