// SPDX-License-Identifier: Apache-2.0
// The OpenTelemetry SDK's own diagnostics (its `diag` logger) go to our log,
// as logfmt lines of one component, never to the console in the SDK's format
// (which OTEL_LOG_LEVEL would turn on). Warnings and errors are kept; its
// info lines (retries given up, mostly: our export failure log says the same)
// only with --log-level debug, as debug; its debug and verbose lines never
// (they dump every span sent). A message repeated within the interval is
// logged once, with how often it came, the next time it is logged.
import { diag, DiagLogLevel, type DiagLogger } from '@opentelemetry/api';
import type { Logger, LogLevel } from '../log';

/** distinct messages remembered at most: some carry numbers */
const MAX_SEEN = 200;

function text(arg: unknown): string {
  if (arg instanceof Error) return arg.message;
  if (typeof arg === 'string') return arg;
  try {
    return JSON.stringify(arg)?.slice(0, 300) ?? String(arg);
  } catch {
    return String(arg);
  }
}

export function routeSdkDiagnostics(log: Logger, verbose: boolean, intervalMs: number): void {
  const seen = new Map<string, { until: number; repeated: number }>();
  const emit = (level: LogLevel, message: string, args: unknown[]) => {
    const now = Date.now();
    const s = seen.get(message);
    if (s && now < s.until) {
      s.repeated++;
      return;
    }
    if (seen.size >= MAX_SEEN) seen.clear();
    seen.set(message, { until: now + intervalMs, repeated: 0 });
    log.log(level, message, { detail: args.length ? args.map(text).join(' ') : undefined, repeated: s?.repeated || undefined });
  };
  const logger: DiagLogger = {
    error: (m, ...a) => emit('error', m, a),
    warn: (m, ...a) => emit('warn', m, a),
    info: (m, ...a) => emit('debug', m, a),
    debug: () => {},
    verbose: () => {},
  };
  diag.disable();
  diag.setLogger(logger, { logLevel: verbose ? DiagLogLevel.INFO : DiagLogLevel.WARN, suppressOverrideMessage: true });
}
