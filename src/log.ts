// SPDX-License-Identifier: Apache-2.0
// A leveled logger writing logfmt lines to stderr, as Prometheus exporters do.

export const LOG_LEVELS = ['error', 'warn', 'info', 'debug'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export type Fields = Record<string, string | number | boolean | undefined>;

function quote(value: string): string {
  return /^[\w./:@+-]+$/.test(value) ? value : JSON.stringify(value);
}

export class Logger {
  private threshold: number;

  constructor(
    level: LogLevel = 'info',
    private readonly component?: string,
    private readonly write: (line: string) => void = (line) => process.stderr.write(line + '\n'),
  ) {
    this.threshold = LOG_LEVELS.indexOf(level);
  }

  setLevel(level: LogLevel): void {
    this.threshold = LOG_LEVELS.indexOf(level);
  }

  enabled(level: LogLevel): boolean {
    return LOG_LEVELS.indexOf(level) <= this.threshold;
  }

  /** A logger for one part of the program, sharing this one's output. */
  child(component: string): Logger {
    const child = new Logger('info', component, this.write);
    child.threshold = this.threshold;
    Object.defineProperty(child, 'threshold', { get: () => this.threshold, set: () => {} });
    return child;
  }

  log(level: LogLevel, msg: string, fields: Fields = {}): void {
    if (!this.enabled(level)) return;
    let line = `ts=${new Date().toISOString()} level=${level}`;
    if (this.component) line += ` component=${this.component}`;
    line += ` msg=${quote(msg)}`;
    for (const [key, value] of Object.entries(fields)) {
      if (value !== undefined) line += ` ${key}=${quote(String(value))}`;
    }
    this.write(line);
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
