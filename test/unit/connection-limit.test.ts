// SPDX-License-Identifier: Apache-2.0
// The cap on HTTP connections: at the cap the connection idle the longest
// makes room for the new one, connections being answered are never closed,
// and the log says so once, then how many per interval.
import assert from 'node:assert/strict';
import { ConnectionLimit } from '../../src/connection-limit';
import { Logger } from '../../src/log';

class FakeSocket {
  destroyed = false;
  constructor(readonly name: string) {}
  destroy(): void {
    this.destroyed = true;
  }
}

function setup(max: number) {
  let t = 0;
  const lines: string[] = [];
  // the summary's timer, run by the test
  const timer = { fn: undefined as (() => void) | undefined, ms: 0 };
  const every = (ms: number, fn: () => void) => {
    Object.assign(timer, { fn, ms });
    return () => (timer.fn = undefined);
  };
  const limit = new ConnectionLimit<FakeSocket>({ max, log: new Logger('info', 'http', (l) => lines.push(l)), now: () => t, every });
  const open = (name: string) => {
    const s = new FakeSocket(name);
    t += 1000;
    limit.opened(s);
    return s;
  };
  const interval = () => {
    t += timer.ms;
    timer.fn?.();
  };
  return { limit, lines, open, tick: (ms: number) => (t += ms), interval, timer };
}

describe('HTTP connection limit', function () {
  it('admits up to the cap and closes nothing', function () {
    const { limit, lines, open } = setup(3);
    const all = ['a', 'b', 'c'].map(open);
    assert.equal(limit.size, 3);
    assert.deepEqual(
      all.map((s) => s.destroyed),
      [false, false, false],
    );
    assert.deepEqual(lines, []);
    limit.stop();
  });

  it('at the cap closes the oldest connection that never sent a whole request, before a keep-alive one', function () {
    const { limit, open, tick } = setup(3);
    const scraper = open('scraper');
    limit.requestStarted(scraper);
    tick(10);
    limit.requestEnded(scraper); // answered: keep-alive connection, idle since now
    const idle1 = open('idle1');
    const idle2 = open('idle2');
    const newcomer = open('newcomer');
    assert.deepEqual(
      [scraper, idle1, idle2, newcomer].map((s) => s.destroyed),
      [false, true, false, false],
    );
    assert.equal(limit.size, 3);
    limit.stop();
  });

  it('closes the keep-alive connection idle the longest when all have been answered', function () {
    const { limit, open, tick } = setup(2);
    const a = open('a');
    const b = open('b');
    for (const s of [b, a]) {
      limit.requestStarted(s);
      tick(10);
      limit.requestEnded(s); // b first, so b has been idle longer
    }
    const c = open('c');
    assert.deepEqual([a.destroyed, b.destroyed, c.destroyed], [false, true, false]);
    limit.stop();
  });

  it('never closes a connection being answered; refuses the new one when every connection is', function () {
    const { limit, lines, open } = setup(2);
    const a = open('a');
    const b = open('b');
    limit.requestStarted(a);
    const c = open('c'); // b is idle: it goes
    assert.deepEqual([a.destroyed, b.destroyed, c.destroyed], [false, true, false]);
    limit.requestStarted(c);
    const d = open('d'); // a and c are answering: d is refused
    assert.deepEqual([a.destroyed, c.destroyed, d.destroyed], [false, false, true]);
    assert.equal(limit.size, 2);
    limit.stop();
    assert.match(lines.at(-1)!, /msg="HTTP connections closed at the limit" limit=2 closed_idle=1 refused_all_busy=1/);
  });

  it('forgets connections that closed, so they take no room', function () {
    const { limit, open } = setup(2);
    const a = open('a');
    open('b');
    limit.closedBy(a);
    const c = open('c');
    assert.equal(c.destroyed, false);
    assert.equal(limit.size, 2);
    limit.stop();
  });

  it('logs once when the cap is reached, then the count per minute, and again after a quiet minute', function () {
    const { limit, lines, open, interval, timer } = setup(1);
    open('a');
    for (let i = 0; i < 5; i++) open(`n${i}`);
    assert.equal(lines.length, 1);
    assert.match(
      lines[0]!,
      /level=warn component=http msg="HTTP connections at their limit: each new one closes the connection idle the longest \(see --http-connection-limit\)" limit=1$/,
    );
    assert.equal(timer.ms, 60_000);
    interval(); // 64 s since the first line: the first four came a second apart
    assert.equal(lines.length, 2);
    assert.match(lines[1]!, /msg="HTTP connections closed at the limit" limit=1 closed_idle=5 seconds=64$/);
    interval(); // a quiet minute: the summary stops
    assert.equal(lines.length, 2);
    assert.equal(timer.fn, undefined);
    open('again');
    assert.equal(lines.length, 3);
    assert.match(lines[2]!, /msg="HTTP connections at their limit/);
    limit.stop();
    assert.match(lines[3]!, /closed_idle=1 /);
  });
});
