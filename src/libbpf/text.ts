// SPDX-License-Identifier: Apache-2.0
// Text of the kernel's char arrays (command names, interface names) for
// labels and span attributes. The kernel keeps bytes, and any bytes: a
// process may name itself with prctl(PR_SET_NAME) or /proc/self/comm, and a
// long UTF-8 name is cut at 15 bytes, maybe inside a character. Label values
// must be valid UTF-8, and two commands must not become one series, which a
// decoder's U+FFFD for every bad byte would do.
//   "nginx" -> "nginx"   "tëst" -> "tëst"   "t\xffst" (bytes) -> "t\\xffst"

const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0'));

/** Bytes start..end as text: valid UTF-8 as it is; each byte that is not
 * part of a valid UTF-8 sequence as \xHH (lower-case hex), and a backslash
 * that would read as such an escape (one followed by x and two hex digits)
 * as \x5c. The text is valid UTF-8, and different bytes give different text:
 * the escapes can be read back. */
export function escapedText(buf: Uint8Array, start = 0, end = buf.length): string {
  let out = '';
  let run = start; // valid bytes from here to i are not copied yet
  let i = start;
  while (i < end) {
    const b = buf[i]!;
    const n = b === 0x5c ? (readsAsEscape(buf, i, end) ? 0 : 1) : sequenceLength(buf, i, end);
    if (n > 0) {
      i += n;
      continue;
    }
    out += decode(buf, run, i) + '\\x' + HEX[b];
    run = ++i;
  }
  return out + decode(buf, run, end);
}

/** A NUL-terminated string of at most size bytes at offset (a C char array), as escapedText. */
export function cString(buf: Uint8Array, offset: number, size: number): string {
  let end = offset;
  while (end < offset + size && end < buf.length && buf[end] !== 0) end++;
  return escapedText(buf, offset, end);
}

function decode(buf: Uint8Array, start: number, end: number): string {
  return start === end ? '' : Buffer.from(buf.buffer, buf.byteOffset + start, end - start).toString('utf8');
}

const isHexDigit = (c: number | undefined) => c !== undefined && ((c >= 0x30 && c <= 0x39) || (c >= 0x61 && c <= 0x66) || (c >= 0x41 && c <= 0x46));

function readsAsEscape(buf: Uint8Array, i: number, end: number): boolean {
  return i + 3 < end && buf[i + 1] === 0x78 && isHexDigit(buf[i + 2]) && isHexDigit(buf[i + 3]);
}

/** The length of the valid UTF-8 sequence at i, or 0 if there is none (The
 * Unicode Standard, table 3-7: no overlong forms, no surrogates, nothing
 * past U+10FFFF). */
function sequenceLength(buf: Uint8Array, i: number, end: number): number {
  const b = buf[i]!;
  if (b < 0x80) return 1;
  let n: number;
  let lo = 0x80;
  let hi = 0xbf; // the range of the second byte; the others are 80..BF
  if (b >= 0xc2 && b <= 0xdf) n = 2;
  else if (b >= 0xe0 && b <= 0xef) {
    n = 3;
    if (b === 0xe0) lo = 0xa0;
    if (b === 0xed) hi = 0x9f;
  } else if (b >= 0xf0 && b <= 0xf4) {
    n = 4;
    if (b === 0xf0) lo = 0x90;
    if (b === 0xf4) hi = 0x8f;
  } else return 0;
  if (i + n > end) return 0;
  const second = buf[i + 1]!;
  if (second < lo || second > hi) return 0;
  for (let k = 2; k < n; k++) if ((buf[i + k]! & 0xc0) !== 0x80) return 0;
  return n;
}
