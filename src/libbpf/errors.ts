// SPDX-License-Identifier: Apache-2.0
// Failures of libbpf and the bpf() system call as typed errors. Every native
// call that can fail goes through check() or checkPtr(); raw return codes never
// leave src/libbpf/.
import os from 'node:os';
import { errno, native, type Ptr } from './native';
import { captureLog } from './log';

const errnoNames = new Map<number, string>(Object.entries(os.constants.errno).map(([name, value]) => [value, name]));

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

  /** The errno and the one line of libbpf's log that says why ("EPERM
   * (Operation not permitted): BPF program load failed"): for a program the
   * verifier refused, its last words. */
  reason(): string {
    const errno = `${this.code} (${this.message.slice(this.message.lastIndexOf(' (') + 2, -1)})`;
    const line = usefulLine(this.log);
    return line ? `${errno}: ${line}` : errno;
  }

  /** The operation and the reason, in one line. */
  summary(): string {
    return `${this.op}: ${this.reason()}`;
  }
}

/** Lines libbpf logs around a failure that explain nothing by themselves. */
const NOISE = [
  /-- (BEGIN|END) PROG LOAD LOG --/,
  /failed to load object/,
  /failed to load: -?\d+/,
  /try raising 'ulimit -l'/,
  /Failed to bump RLIMIT_MEMLOCK/,
  /Couldn't load trivial BPF program/,
  /^processed \d+ insns|^verification time|^stack depth/,
];

/** One line for any failure: a BpfError's summary (operation, errno, the
 * verifier's telling line), or an error's message. */
export function summaryOf(err: unknown): string {
  return err instanceof BpfError ? err.summary() : String((err as Error)?.message ?? err);
}

/** Everything known of a failure: a BpfError's libbpf log too. */
export function detailOf(err: unknown): string {
  return err instanceof BpfError ? err.detail() : String((err as Error)?.message ?? err);
}

/** The line of a libbpf log that says why: inside a verifier log its last
 * meaningful line, else the first line that is not noise; without libbpf's
 * "libbpf: prog 'x': " prefixes. */
export function usefulLine(log: readonly string[]): string | undefined {
  const noise = (l: string) => NOISE.some((re) => re.test(l.trim()));
  const begin = log.findIndex((l) => l.includes('-- BEGIN PROG LOAD LOG --'));
  const end = log.findIndex((l) => l.includes('-- END PROG LOAD LOG --'));
  let line: string | undefined;
  if (begin >= 0 && end > begin)
    line = log
      .slice(begin + 1, end)
      .filter((l) => !noise(l))
      .pop();
  line ??= log.find((l) => !noise(l));
  return line
    ?.trim()
    .replace(/^libbpf: /, '')
    .replace(/^prog '[^']*': /, '');
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
