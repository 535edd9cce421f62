// SPDX-License-Identifier: Apache-2.0
// Span and trace ids that follow from the kernel's socket cookies, so that a
// connection's span id is known to whoever needs it (a child span of another
// connection) without keeping state in user space. The cookie is unique
// while the host runs; mixed with salts from the boot id, ids differ between
// hosts and boots and look random to samplers and backends.
import fs from 'node:fs';
import { RandomIdGenerator, type IdGenerator } from '@opentelemetry/sdk-trace';

const MASK = (1n << 64n) - 1n;

/** splitmix64's finalizer: a bijection of 64-bit values that mixes every bit. */
function mix(x: bigint): bigint {
  x = (x + 0x9e3779b97f4a7c15n) & MASK;
  x = ((x ^ (x >> 30n)) * 0xbf58476d1ce4e5b9n) & MASK;
  x = ((x ^ (x >> 27n)) * 0x94d049bb133111ebn) & MASK;
  return x ^ (x >> 31n);
}

const hex16 = (x: bigint) => x.toString(16).padStart(16, '0');

export class CookieIds {
  private readonly salts: [bigint, bigint, bigint];

  constructor(bootId: string = fs.readFileSync('/proc/sys/kernel/random/boot_id', 'utf8')) {
    const b = BigInt(`0x${bootId.replace(/[^0-9a-f]/gi, '').padEnd(32, '0').slice(0, 32)}`);
    this.salts = [mix(b & MASK), mix(b >> 64n), mix((b & MASK) ^ 0x5bd1e995n)];
  }

  spanId(cookie: bigint): string {
    return hex16(mix(cookie ^ this.salts[0]) || 1n);
  }

  traceId(rootCookie: bigint): string {
    return hex16(mix(rootCookie ^ this.salts[1])) + hex16(mix(rootCookie ^ this.salts[2]) || 1n);
  }
}

/** The SDK's id generator, handing out the ids set just before a span starts
 * (spans start one at a time, synchronously), random ones otherwise. */
export class PresetIdGenerator implements IdGenerator {
  nextTraceId: string | undefined;
  nextSpanId: string | undefined;
  private readonly random = new RandomIdGenerator();

  generateTraceId(): string {
    const id = this.nextTraceId ?? this.random.generateTraceId();
    this.nextTraceId = undefined;
    return id;
  }

  generateSpanId(): string {
    const id = this.nextSpanId ?? this.random.generateSpanId();
    this.nextSpanId = undefined;
    return id;
  }
}
