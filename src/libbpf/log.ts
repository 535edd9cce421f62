// SPDX-License-Identifier: Apache-2.0
// libbpf's log, captured through libbpf_set_print: lines logged while a call
// runs travel with its error; all lines go to the logger as well.
import { native, printFnPointer, registerCallback, type Ptr } from './native';
import { rootLogger, type Logger } from '../log';

const LEVELS = ['warn', 'info', 'debug'] as const; // enum libbpf_print_level
const LIBBPF_DEBUG = 2;

let logger: Logger = rootLogger.child('libbpf');
let capturing: string[] | null = null;
// a verifier log arrives in one call and can run to megabytes
const BUFFER_SIZE = 16 << 20;
let buffer: Buffer | undefined;

function onPrint(level: number, fmt: string, ap: Ptr): number {
  buffer ??= Buffer.alloc(BUFFER_SIZE);
  const n = native.vsnprintf(buffer, buffer.length, fmt, ap) as number;
  const text = buffer.toString('utf8', 0, Math.max(0, Math.min(n, buffer.length - 1)));
  const lines = text.split('\n').filter((line) => line.trim() !== '');
  const important = level < LIBBPF_DEBUG;
  for (const line of lines) {
    if (capturing && important) capturing.push(line);
    logger.debug(line, { libbpf_level: LEVELS[level] });
  }
  return n;
}

let installed = false;

function install(): void {
  if (installed) return;
  native.setPrint(registerCallback(onPrint, printFnPointer));
  installed = true;
}

/** Where libbpf's lines go (at debug level: errors carry the ones that matter). */
export function setLibbpfLogger(l: Logger): void {
  logger = l;
}

/** Runs call, returning its result and what libbpf logged meanwhile. */
export function captureLog<T>(call: () => T): [T, string[]] {
  install();
  const outer = capturing;
  const lines: string[] = [];
  capturing = lines;
  try {
    return [call(), lines];
  } finally {
    capturing = outer;
    if (outer) outer.push(...lines);
  }
}
