// SPDX-License-Identifier: Apache-2.0
// Span and trace ids that follow from the kernel's connection ids (a counter
// of the loaded TCP object), so that a connection's span id is known to
// whoever needs it (a child span of another connection) without keeping
// state in user space. Mixed with random salts drawn at start, ids differ
// between hosts and runs and look random to samplers and backends.
import crypto from 'node:crypto';
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

export class ConnectionIds {
  private readonly salts: bigint[];

  constructor(seed: Buffer = crypto.randomBytes(24)) {
    this.salts = [0, 8, 16].map((at) => seed.readBigUInt64LE(at));
  }

  spanId(id: bigint): string {
    return hex16(mix(id ^ this.salts[0]!) || 1n);
  }

  traceId(rootId: bigint): string {
    return hex16(mix(rootId ^ this.salts[1]!)) + hex16(mix(rootId ^ this.salts[2]!) || 1n);
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
