// SPDX-License-Identifier: Apache-2.0
// Span and trace ids that follow from the kernel's connection ids (a counter
// of the loaded TCP object), so that a connection's span id is known to
// whoever needs it (a child span of another connection) without keeping
// state in user space. Each id goes through a keyed permutation of 64-bit
// values (a four-round Feistel network over 32-bit halves, keys drawn at
// start), so ids differ between hosts and runs, look random to samplers and
// backends, and two connections never share one. Plain numbers throughout:
// connection ids stay far below 2^53, and BigInt arithmetic cost more than
// the rest of a span's construction.
import crypto from 'node:crypto';

const TWO_32 = 4294967296;

/** murmur3's finalizer: mixes every bit of a 32-bit value into every other. */
function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

// two hex digits per byte from a table: Number#toString(16) is V8's slow
// radix conversion, which cost more than all the rest of a span's ids
const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0'));
const hex8 = (x: number) => HEX[x >>> 24]! + HEX[(x >>> 16) & 255]! + HEX[(x >>> 8) & 255]! + HEX[x & 255]!;

/** A keyed permutation of 64-bit values given as (hi, lo) 32-bit halves. */
class Permutation {
  hi = 0;
  lo = 0;

  constructor(private readonly keys: Uint32Array) {}

  /** Sets hi and lo to the image of id (a whole number below 2^53). */
  apply(id: number): this {
    let l = Math.floor(id / TWO_32) >>> 0;
    let r = id >>> 0;
    for (let i = 0; i < this.keys.length; i++) {
      const next = (l ^ fmix32(r ^ this.keys[i]!)) >>> 0;
      l = r;
      r = next;
    }
    this.hi = l;
    this.lo = r;
    return this;
  }
}

export class ConnectionIds {
  private readonly span: Permutation;
  private readonly traceHigh: Permutation;
  private readonly traceLow: Permutation;

  constructor(seed: Buffer = crypto.randomBytes(48)) {
    const keys = (at: number) => new Uint32Array([0, 1, 2, 3].map((i) => seed.readUInt32LE(at + 4 * i)));
    [this.span, this.traceHigh, this.traceLow] = [new Permutation(keys(0)), new Permutation(keys(16)), new Permutation(keys(32))];
  }

  spanId(id: number): string {
    const p = this.span.apply(id);
    return p.hi === 0 && p.lo === 0 ? '0000000000000001' : hex8(p.hi) + hex8(p.lo);
  }

  traceId(rootId: number): string {
    const a = this.traceHigh.apply(rootId);
    const high = hex8(a.hi) + hex8(a.lo);
    const b = this.traceLow.apply(rootId);
    return high + (b.hi === 0 && b.lo === 0 ? '0000000000000001' : hex8(b.hi) + hex8(b.lo));
  }

  /** Whether a trace is sampled at ratio: the same answer for every span of
   * the trace (it depends on the root only), uniform over roots. */
  sampled(rootId: number, ratio: number): boolean {
    if (ratio >= 1) return true;
    if (ratio <= 0) return false;
    return this.traceHigh.apply(rootId).hi < ratio * TWO_32;
  }
}
