// SPDX-License-Identifier: Apache-2.0
// Log lines in both formats: the same keys in the same order, logfmt quoting
// only what needs it, JSON keeping numbers and booleans; a field named like
// one of the line's own keys cannot hide it; and the format a command line
// asks for is known before it is parsed.
import assert from 'node:assert/strict';
import { exitLine, requestedLogFormat } from '../../src/cli';
import { formatLine, Logger } from '../../src/log';

const T = new Date('2026-01-02T03:04:05.678Z');

describe('log lines', function () {
  it('writes logfmt and JSON with the same keys in the same order', function () {
    const fields = { address: '127.0.0.1:9435', spans: 3, up: true, why: 'a b"c', none: undefined };
    assert.equal(
      formatLine('logfmt', 'info', 'http', 'listening now', fields, T),
      'ts=2026-01-02T03:04:05.678Z level=info component=http msg="listening now" address=127.0.0.1:9435 spans=3 up=true why="a b\\"c"',
    );
    const json = formatLine('json', 'info', 'http', 'listening now', fields, T);
    assert.equal(
      json,
      '{"ts":"2026-01-02T03:04:05.678Z","level":"info","component":"http","msg":"listening now","address":"127.0.0.1:9435","spans":3,"up":true,"why":"a b\\"c"}',
    );
    assert.deepEqual(Object.keys(JSON.parse(json) as object), ['ts', 'level', 'component', 'msg', 'address', 'spans', 'up', 'why']);
  });

  it("keeps the line's own keys: a field of the same name is written as field_NAME; NaN and Infinity as text", function () {
    const o = JSON.parse(formatLine('json', 'warn', undefined, 'm', { msg: 'x', level: 'y', ratio: NaN, big: Infinity }, T)) as Record<string, unknown>;
    assert.deepEqual(o, { ts: T.toISOString(), level: 'warn', msg: 'm', field_msg: 'x', field_level: 'y', ratio: 'NaN', big: 'Infinity' });
  });

  it('shares level and format with its children', function () {
    const lines: string[] = [];
    const root = new Logger('info', undefined, (l) => lines.push(l));
    const child = root.child('tracing');
    child.debug('hidden');
    root.setLevel('debug');
    root.setFormat('json');
    child.debug('shown', { n: 1 });
    assert.equal(lines.length, 1);
    assert.deepEqual({ ...(JSON.parse(lines[0]!) as object), ts: 0 }, { ts: 0, level: 'debug', component: 'tracing', msg: 'shown', n: 1 });
  });

  it('knows the format asked for before parsing: the last flag, else BPFNET_LOG_FORMAT, else logfmt', function () {
    assert.equal(requestedLogFormat([], {}), 'logfmt');
    assert.equal(requestedLogFormat(['--log-format', 'json'], {}), 'json');
    assert.equal(requestedLogFormat(['--log-format=json', '--log-format=logfmt'], {}), 'logfmt');
    assert.equal(requestedLogFormat([], { BPFNET_LOG_FORMAT: ' json ' }), 'json');
    assert.equal(requestedLogFormat(['--log-format', 'logfmt'], { BPFNET_LOG_FORMAT: 'json' }), 'logfmt');
    // not one it knows: the default, and the parser refuses it
    assert.equal(requestedLogFormat(['--log-format', 'xml'], { BPFNET_LOG_FORMAT: 'json' }), 'logfmt');
    assert.equal(requestedLogFormat(['--', '--log-format', 'json'], {}), 'logfmt');
    assert.equal(exitLine('logfmt', 'bad'), 'bpfnet-exporter: bad');
    assert.deepEqual(Object.entries(JSON.parse(exitLine('json', 'bad')) as object).slice(1), [
      ['level', 'error'],
      ['msg', 'bad'],
    ]);
  });
});
