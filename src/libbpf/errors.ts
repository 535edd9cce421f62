// SPDX-License-Identifier: Apache-2.0
// Failures of libbpf and the bpf() system call as typed errors. Every native
// call that can fail goes through check() or checkPtr(); raw return codes never
// leave src/libbpf/.
import os from 'node:os';
import { errno, native, type Ptr } from './native';
import { captureLog } from './log';

const errnoNames = new Map<number, string>(
  Object.entries(os.constants.errno).map(([name, value]) => [value, name]),
);

export function errnoName(code: number): string {
  return errnoNames.get(code) ?? (code >= 4000 && code < 4100 ? `LIBBPF_ERRNO ${code}` : `errno ${code}`);
}

/** strerror(), and libbpf's own codes (4000 and up), through libbpf_strerror. */
function errnoMessage(code: number): string {
  const buf = Buffer.alloc(256);
  native.strerror(code, buf, buf.length);
  const end = buf.indexOf(0);
  return buf.toString('utf8', 0, end < 0 ? buf.length : end);
}

/** A libbpf or bpf() failure: which operation, the errno, and what libbpf logged. */
export class BpfError extends Error {
  readonly code: string;

  constructor(
    readonly op: string,
    readonly errno: number,
    readonly log: readonly string[] = [],
  ) {
    super(`${op}: ${errnoName(errno)} (${errnoMessage(errno)})`);
    this.name = 'BpfError';
    this.code = errnoName(errno);
  }

  /** The message with libbpf's explanation (the verifier log, for instance). */
  detail(): string {
    return this.log.length ? `${this.message}\n${this.log.join('\n')}` : this.message;
  }

  /** The message and the few log lines that say why: for a refused program,
   * the verifier's last words before it gave up. */
  summary(): string {
    const end = this.log.findIndex((l) => l.includes('-- END PROG LOAD LOG --'));
    const why = end > 0 ? this.log.slice(0, end).filter((l) => !/^processed \d+ insns/.test(l)).slice(-2) : this.log.slice(-2);
    return why.length ? `${this.message}: ${why.map((l) => l.trim()).join(' / ')}` : this.message;
  }
}

/** The kernel lacks something a probe needs. */
export class MissingFeatureError extends Error {
  constructor(
    readonly feature: string,
    readonly reason: string,
  ) {
    super(`${feature} is not available: ${reason}`);
    this.name = 'MissingFeatureError';
  }
}

/** Runs a native call returning 0 or -errno (or a fd), throwing BpfError when negative. */
export function check(op: string, call: () => number): number {
  const [ret, log] = captureLog(call);
  if (typeof ret === 'number' && ret < 0) throw new BpfError(op, -ret, log);
  return ret;
}

/** Runs a native call returning a pointer, throwing BpfError (from errno) on NULL. */
export function checkPtr(op: string, call: () => Ptr | null): Ptr {
  const [ret, log] = captureLog(call);
  if (ret === null || ret === 0n) throw new BpfError(op, errno() || 22, log);
  return ret;
}
