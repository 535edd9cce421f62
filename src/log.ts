// SPDX-License-Identifier: Apache-2.0
// A leveled logger writing to stderr, as Prometheus exporters do: logfmt
// lines, or one JSON object per line (--log-format json) with the same keys.
//   ts=2026-01-01T00:00:00.000Z level=info component=http msg=listening address=127.0.0.1:9435
//   {"ts":"2026-01-01T00:00:00.000Z","level":"info","component":"http","msg":"listening","address":"127.0.0.1:9435"}

export const LOG_LEVELS = ['error', 'warn', 'info', 'debug'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export const LOG_FORMATS = ['logfmt', 'json'] as const;
export type LogFormat = (typeof LOG_FORMATS)[number];

export type Fields = Record<string, string | number | boolean | undefined>;

function quote(value: string): string {
  return /^[\w./:@+-]+$/.test(value) ? value : JSON.stringify(value);
}

/** The keys every line starts with; a field of the same name is written as field_NAME. */
const OWN_KEYS = new Set(['ts', 'level', 'component', 'msg']);

/** A line in the given format. */
export function formatLine(format: LogFormat, level: LogLevel, component: string | undefined, msg: string, fields: Fields, now = new Date()): string {
  const entries: [string, string | number | boolean][] = [
    ['ts', now.toISOString()],
    ['level', level],
  ];
  if (component) entries.push(['component', component]);
  entries.push(['msg', msg]);
  for (const [key, value] of Object.entries(fields)) if (value !== undefined) entries.push([OWN_KEYS.has(key) ? `field_${key}` : key, value]);
  if (format === 'json') {
    // numbers JSON cannot hold (NaN, Infinity) as the text logfmt writes
    const json = entries.map(([k, v]) => [k, typeof v === 'number' && !Number.isFinite(v) ? String(v) : v]);
    return JSON.stringify(Object.fromEntries(json));
  }
  return entries.map(([k, v]) => `${k}=${k === 'ts' || k === 'level' || k === 'component' ? v : quote(String(v))}`).join(' ');
}

/** What a logger and its children share. */
interface Output {
  threshold: number;
  format: LogFormat;
  write: (line: string) => void;
}

export class Logger {
  private readonly out: Output;

  constructor(
    level: LogLevel = 'info',
    private readonly component?: string,
    write: (line: string) => void = (line) => process.stderr.write(line + '\n'),
    format: LogFormat = 'logfmt',
  ) {
    this.out = { threshold: LOG_LEVELS.indexOf(level), format, write };
  }

  setLevel(level: LogLevel): void {
    this.out.threshold = LOG_LEVELS.indexOf(level);
  }

  setFormat(format: LogFormat): void {
    this.out.format = format;
  }

  get format(): LogFormat {
    return this.out.format;
  }

  enabled(level: LogLevel): boolean {
    return LOG_LEVELS.indexOf(level) <= this.out.threshold;
  }

  /** A logger for one part of the program, sharing this one's output, level and format. */
  child(component: string): Logger {
    const child = new Logger('info', component);
    (child as unknown as { out: Output }).out = this.out;
    return child;
  }

  log(level: LogLevel, msg: string, fields: Fields = {}): void {
    if (!this.enabled(level)) return;
    this.out.write(formatLine(this.out.format, level, this.component, msg, fields));
  }

  error(msg: string, fields?: Fields): void {
    this.log('error', msg, fields);
  }
  warn(msg: string, fields?: Fields): void {
    this.log('warn', msg, fields);
  }
  info(msg: string, fields?: Fields): void {
    this.log('info', msg, fields);
  }
  debug(msg: string, fields?: Fields): void {
    this.log('debug', msg, fields);
  }
}

export const rootLogger = new Logger('info');
