// SPDX-License-Identifier: Apache-2.0
// The kernel's char arrays as label text: valid UTF-8 kept, every other byte
// escaped, so the text is always valid UTF-8 and never the same for two
// different names.
import assert from 'node:assert/strict';
import { isUtf8 } from 'node:buffer';
import { cString, escapedText } from '../../../src/libbpf/text';

const text = (...parts: (string | number[])[]) => escapedText(Buffer.concat(parts.map((p) => (typeof p === 'string' ? Buffer.from(p) : Buffer.from(p)))));

/** Reads the escapes back: what escapedText must make possible. */
function unescape(s: string): Buffer {
  const out: Buffer[] = [];
  let run = '';
  for (let i = 0; i < s.length;) {
    const m = /^\\x([0-9a-fA-F]{2})/.exec(s.slice(i, i + 4));
    if (m) {
      out.push(Buffer.from(run), Buffer.from([parseInt(m[1]!, 16)]));
      run = '';
      i += 4;
    } else run += s[i++];
  }
  out.push(Buffer.from(run));
  return Buffer.concat(out);
}

describe('C strings as label text', function () {
  it('keeps ASCII and valid UTF-8 as they are', function () {
    for (const s of ['nginx', '', 'tëst', 'プロキシ', 'a😀b', 'tab\there', 'C:\\dir', '\\x', '\\xg0', '\\x1']) assert.equal(text(s), s);
  });

  it('escapes each byte that is not UTF-8 as \\xHH', function () {
    assert.equal(text('test-', [0xff]), 'test-\\xff');
    assert.equal(text([0x80, 0xfe], 'x'), '\\x80\\xfex');
    assert.equal(text([0xc0, 0xaf]), '\\xc0\\xaf', 'overlong /');
    assert.equal(text([0xe0, 0x80, 0xaf]), '\\xe0\\x80\\xaf', 'overlong, three bytes');
    assert.equal(text([0xed, 0xa0, 0x80]), '\\xed\\xa0\\x80', 'a surrogate');
    assert.equal(text([0xf4, 0x90, 0x80, 0x80]), '\\xf4\\x90\\x80\\x80', 'past U+10FFFF');
    assert.equal(text([0xf5]), '\\xf5');
  });

  it('escapes a character the kernel cut at 15 bytes, and keeps the rest', function () {
    // "ääääääää" is 16 bytes; the kernel keeps 15: seven ä and half of one
    const cut = Buffer.from('ääääääää').subarray(0, 15);
    assert.equal(escapedText(cut), 'äääääää\\xc3');
    assert.equal(text([0xe2, 0x82], 'x'), '\\xe2\\x82x', 'a truncated sequence before ASCII');
  });

  it('writes a backslash that would read as an escape as \\x5c, and no other', function () {
    assert.equal(text('t\\xff'), 't\\x5cxff');
    assert.equal(text('\\xAb'), '\\x5cxAb');
    assert.equal(text('a\\b'), 'a\\b');
    assert.notEqual(text('t\\xff'), text('t', [0xff]));
  });

  it('gives valid UTF-8 that reads back to the bytes, for every pair and some triples of bytes', function () {
    const samples: Buffer[] = [];
    for (let a = 0; a < 256; a++) for (let b = 0; b < 256; b++) samples.push(Buffer.from([a, b]));
    for (const lead of [0x5c, 0xc3, 0xe2, 0xf0, 0xff])
      for (let b = 0; b < 256; b++) samples.push(Buffer.from([lead, 0x78, b, 0x66]), Buffer.from([lead, 0xa4, b]));
    const seen = new Map<string, string>();
    for (const bytes of samples) {
      const s = escapedText(bytes);
      assert.ok(isUtf8(Buffer.from(s)), bytes.toString('hex'));
      assert.ok(!s.includes('\ufffd'), bytes.toString('hex'));
      assert.deepEqual(unescape(s), bytes, `${bytes.toString('hex')} -> ${JSON.stringify(s)}`);
      assert.equal(seen.get(s) ?? bytes.toString('hex'), bytes.toString('hex'), `two byte strings give ${JSON.stringify(s)}`);
      seen.set(s, bytes.toString('hex'));
    }
  });

  it('reads a C char array to its NUL or its size', function () {
    const buf = Buffer.from([0x41, 0x42, 0xff, 0, 0x43, 0x44, 0x45]);
    assert.equal(cString(buf, 0, 7), 'AB\\xff');
    assert.equal(cString(buf, 4, 2), 'CD');
    assert.equal(cString(buf, 4, 16), 'CDE');
    assert.equal(cString(buf, 3, 4), '');
  });
});
