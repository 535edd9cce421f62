// SPDX-License-Identifier: Apache-2.0
// A cap on the HTTP server's open connections that never locks a scraper
// out: a new connection at the cap closes the connection idle the longest
// instead of being refused. Idle connections cost an attacker nothing to hold
// and a scraper nothing to lose (it connects again), so the newest always
// gets in; only connections that are being answered are never closed. One
// log line when the cap is first reached, then a count per interval while it
// goes on.

import type { Logger } from './log';

/** What the limit needs of a connection. */
export interface Closable {
  destroy(): void;
}

interface Connection {
  /** when it was opened, or when its last response ended */
  idleSince: number;
  /** requests being answered (several when pipelined) */
  answering: number;
  /** a request of it was answered: a scraper keeping its connection alive,
   * kept over connections that never sent a whole request */
  answered: boolean;
}

export interface ConnectionLimitOptions {
  /** open connections at most */
  max: number;
  log: Logger;
  /** how often, while the limit keeps closing connections, the log says how many */
  summaryMs?: number;
  now?: () => number;
  /** runs fn every ms until the returned function is called; default setInterval, not keeping the process alive */
  every?: (ms: number, fn: () => void) => () => void;
}

function every(ms: number, fn: () => void): () => void {
  const timer = setInterval(fn, ms).unref();
  return () => clearInterval(timer);
}

export class ConnectionLimit<S extends Closable = Closable> {
  readonly max: number;
  private readonly open = new Map<S, Connection>(); // in the order they were opened
  private readonly log: Logger;
  private readonly summaryMs: number;
  private readonly now: () => number;
  private readonly every: (ms: number, fn: () => void) => () => void;
  /** stops the summary while the limit is closing connections */
  private summary: (() => void) | undefined;
  private summaryStart = 0;
  private closed = 0;
  private refused = 0;

  constructor(o: ConnectionLimitOptions) {
    this.max = o.max;
    this.log = o.log;
    this.summaryMs = o.summaryMs ?? 60_000;
    this.now = o.now ?? Date.now;
    this.every = o.every ?? every;
  }

  get size(): number {
    return this.open.size;
  }

  /** A connection just opened. At the cap, closes the one idle the longest
   * (one that never sent a whole request first, then the keep-alive
   * connection unused the longest) to make room; if every connection is
   * being answered, closes the new one instead. Returns whether it stays. */
  opened(socket: S): boolean {
    if (this.open.size >= this.max) {
      const victim = this.idlest();
      this.reached();
      if (!victim) {
        this.refused++;
        socket.destroy();
        return false;
      }
      this.open.delete(victim);
      this.closed++;
      victim.destroy();
    }
    this.open.set(socket, { idleSince: this.now(), answering: 0, answered: false });
    return true;
  }

  /** A request of the connection is being answered: it is not idle. */
  requestStarted(socket: S): void {
    const c = this.open.get(socket);
    if (c) c.answering++;
  }

  /** The answer is sent (or abandoned): idle from now. */
  requestEnded(socket: S): void {
    const c = this.open.get(socket);
    if (!c) return;
    c.answering = Math.max(0, c.answering - 1);
    c.answered = true;
    c.idleSince = this.now();
  }

  /** The connection closed (either end). */
  closedBy(socket: S): void {
    this.open.delete(socket);
  }

  /** Stops the summary timer; logs what it had not said yet. */
  stop(): void {
    this.flush();
    this.summary?.();
    this.summary = undefined;
  }

  private idlest(): S | undefined {
    let best: S | undefined;
    let bestConn: Connection | undefined;
    for (const [socket, c] of this.open) {
      if (c.answering) continue;
      // never answered before answered; then the longest idle
      if (!bestConn || (bestConn.answered && !c.answered) || (bestConn.answered === c.answered && c.idleSince < bestConn.idleSince)) {
        best = socket;
        bestConn = c;
      }
    }
    return best;
  }

  private reached(): void {
    if (this.summary) return;
    this.log.warn('HTTP connections at their limit: each new one closes the connection idle the longest (see --http-connection-limit)', {
      limit: this.max,
    });
    this.summaryStart = this.now();
    this.summary = this.every(this.summaryMs, () => {
      if (!this.flush()) {
        this.summary?.();
        this.summary = undefined; // quiet again: the next time logs the first line again
      }
    });
  }

  /** Logs the connections closed since the last line; false if none were. */
  private flush(): boolean {
    if (!this.closed && !this.refused) return false;
    this.log.warn('HTTP connections closed at the limit', {
      limit: this.max,
      closed_idle: this.closed,
      refused_all_busy: this.refused || undefined,
      seconds: Math.round((this.now() - this.summaryStart) / 1000),
    });
    this.summaryStart = this.now();
    this.closed = 0;
    this.refused = 0;
    return true;
  }
}
