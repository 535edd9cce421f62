// SPDX-License-Identifier: Apache-2.0
// Why an export failed, in words an operator can act on, and a log of
// failures that cannot flood: the first failure is logged when it happens,
// the ones after it as one summary per interval (how many exports and spans,
// for which reasons), and the recovery once. The counts are also in
// bpfnet_spans_dropped_total{reason="export_failed"}.
import type { Logger } from '../log';

/** The last HTTP answer that was not a success, as the transport saw it:
 * the SDK reports statuses it retried (429, 502, 503, 504) without them. */
export interface HttpAnswer {
  status: number;
  statusText?: string;
  retryAfter?: string;
}

export interface ExportFailure {
  /** refused, dns, timeout, reset, unreachable, tls, http, grpc, stopped, error */
  kind: string;
  /** the specifics: status, address, the error's own words */
  detail: string;
}

const TLS_CODE = /^(ERR_TLS_|ERR_SSL_|CERT_|UNABLE_TO_|DEPTH_ZERO_SELF_SIGNED_CERT$|SELF_SIGNED_CERT_IN_CHAIN$|HOSTNAME_MISMATCH$|EPROTO$)/;

const BY_CODE: Record<string, string> = {
  ECONNREFUSED: 'refused',
  ENOTFOUND: 'dns',
  EAI_AGAIN: 'dns',
  EAI_FAIL: 'dns',
  ETIMEDOUT: 'timeout',
  ECONNRESET: 'reset',
  EPIPE: 'reset',
  ENETUNREACH: 'unreachable',
  EHOSTUNREACH: 'unreachable',
};

function httpFailure(a: HttpAnswer): ExportFailure {
  let detail = `HTTP ${a.status}${a.statusText ? ` ${a.statusText}` : ''}`;
  if (a.retryAfter) detail += ` (Retry-After: ${a.retryAfter})`;
  return { kind: 'http', detail };
}

/** gRPC's status codes by number (grpc/doc/statuscodes.md). */
const GRPC_STATUS = [
  'OK',
  'CANCELLED',
  'UNKNOWN',
  'INVALID_ARGUMENT',
  'DEADLINE_EXCEEDED',
  'NOT_FOUND',
  'ALREADY_EXISTS',
  'PERMISSION_DENIED',
  'RESOURCE_EXHAUSTED',
  'FAILED_PRECONDITION',
  'ABORTED',
  'OUT_OF_RANGE',
  'UNIMPLEMENTED',
  'INTERNAL',
  'UNAVAILABLE',
  'DATA_LOSS',
  'UNAUTHENTICATED',
];
const DEADLINE_EXCEEDED = 4;
const UNAVAILABLE = 14;

/** A gRPC call's failure (@grpc/grpc-js's ServiceError): its status, and
 * what the transport underneath said when there was no connection. */
function grpcFailure(code: number, details: string): ExportFailure {
  const status = `gRPC ${GRPC_STATUS[code] ?? code}${details ? `: ${details}` : ''}`;
  if (code === DEADLINE_EXCEEDED) return { kind: 'timeout', detail: status };
  const errno = code === UNAVAILABLE ? /\b(E[A-Z]+)\b/.exec(details)?.[1] : undefined;
  if (errno && BY_CODE[errno]) return { kind: BY_CODE[errno], detail: status };
  return { kind: 'grpc', detail: status };
}

/** Classifies what the OTLP exporter reported for a failed export. */
export function classifyFailure(err: unknown, lastAnswer?: HttpAnswer): ExportFailure {
  const e = (err ?? {}) as { code?: unknown; message?: unknown; name?: unknown; cause?: unknown; details?: unknown; metadata?: unknown };
  const message = typeof e.message === 'string' ? e.message : String(err ?? '');
  if (typeof e.code === 'number' && typeof e.details === 'string' && e.metadata !== undefined) return grpcFailure(e.code, e.details);
  // OTLPExporterError: the collector answered with a status it does not retry
  if (typeof e.code === 'number') return httpFailure({ status: e.code, statusText: message || undefined });
  const code = typeof e.code === 'string' ? e.code : undefined;
  if (code && BY_CODE[code]) return { kind: BY_CODE[code], detail: message };
  if (code && TLS_CODE.test(code)) return { kind: 'tls', detail: `${message} (${code})` };
  if (e.name === 'ExportTimeoutError' || message === 'Request timed out') return { kind: 'timeout', detail: message };
  // a retried status whose retries ran out: the SDK keeps no status
  if (err === undefined || /retryable status/.test(message)) {
    return lastAnswer ? httpFailure(lastAnswer) : { kind: 'http', detail: 'the collector asked to retry later, until the export timed out' };
  }
  if (code === 'ERR_SPAN_EXPORTER_STOPPED') return { kind: 'stopped', detail: message };
  return { kind: 'error', detail: code ? `${message} (${code})` : message };
}

export const describeFailure = (f: ExportFailure) => (f.kind === 'http' || f.kind === 'grpc' ? f.detail : `${f.kind}: ${f.detail}`);

export interface Timers {
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(t: unknown): void;
}

const REAL_TIMERS: Timers = {
  setTimeout: (fn, ms) => setTimeout(fn, ms).unref(),
  clearTimeout: (t) => clearTimeout(t as NodeJS.Timeout),
};

/** Logs export failures: the first at once, then a summary per interval. */
export class FailureLog {
  private window: unknown;
  private windowStart = 0;
  /** failures since the last line, by description */
  private pending = new Map<string, { exports: number; spans: number }>();
  private failing = false;
  private succeededSince = false;

  constructor(
    private readonly log: Logger,
    private readonly target: string,
    readonly intervalMs: number,
    private readonly timers: Timers = REAL_TIMERS,
  ) {}

  failed(f: ExportFailure, spans: number): void {
    this.succeededSince = false;
    if (this.window === undefined) {
      this.failing = true;
      this.log.warn('span export failed (counted in bpfnet_spans_dropped_total{reason="export_failed"})', {
        to: this.target,
        reason: f.kind,
        detail: f.detail,
        spans,
        next_summary_in: `${this.intervalMs / 1000}s`,
      });
      this.open();
      return;
    }
    const key = describeFailure(f);
    const p = this.pending.get(key) ?? { exports: 0, spans: 0 };
    p.exports++;
    p.spans += spans;
    this.pending.set(key, p);
  }

  succeeded(): void {
    this.succeededSince = true;
  }

  private open(): void {
    this.windowStart = Date.now();
    this.window = this.timers.setTimeout(() => this.tick(), this.intervalMs);
  }

  private tick(): void {
    this.window = undefined;
    if (this.pending.size) {
      this.summary();
      this.open();
    } else if (this.failing && this.succeededSince) {
      this.failing = false;
      this.log.info('span exports succeed again', { to: this.target });
    }
  }

  private summary(): void {
    let exports = 0;
    let spans = 0;
    const reasons: string[] = [];
    for (const [key, p] of this.pending) {
      exports += p.exports;
      spans += p.spans;
      reasons.push(`${key} (${p.exports}x)`);
    }
    this.pending.clear();
    this.log.warn('span exports failed (counted in bpfnet_spans_dropped_total{reason="export_failed"})', {
      to: this.target,
      exports,
      spans,
      in_last: `${Math.round((Date.now() - this.windowStart) / 100) / 10}s`,
      reasons: reasons.join('; '),
      now: this.succeededSince ? 'succeeding' : 'failing',
    });
  }

  /** Logs what is pending now (at shutdown) and stops the timer. */
  close(): void {
    if (this.window !== undefined) this.timers.clearTimeout(this.window);
    this.window = undefined;
    if (this.pending.size) this.summary();
  }
}
