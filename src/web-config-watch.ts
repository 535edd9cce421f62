// SPDX-License-Identifier: Apache-2.0
// Re-reads --web.config.file when it, or a certificate, key or CA file it
// names, changes: certificate rotation must not need a restart. The files
// are polled (a stat each per interval) rather than watched with inotify:
// Kubernetes updates a mounted Secret by swapping a symlink of its
// directory, which an inotify watch on the old file never sees, and a stat
// follows the link. A change is applied once the files have stayed the same
// for one interval, so that a certificate written before its key is not read
// half-rotated. A bad new file is logged once and the last good one kept.
import fs from 'node:fs';
import type { Logger } from './log';
import { loadWebConfig, type WebConfig } from './web-config';

export const WATCH_INTERVAL_MS = 1_000;

/** What identifies a file's content without reading it. */
function stamp(file: string): string {
  try {
    const s = fs.statSync(file);
    return `${s.dev}:${s.ino}:${s.size}:${s.mtimeMs}:${s.ctimeMs}`;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code ?? 'error';
  }
}

export class WebConfigWatch {
  private applied: string;
  private seen: string;
  private readonly timer: NodeJS.Timeout;

  /** Polls config's files every intervalMs; apply gets each new good
   * configuration, and may refuse it by throwing (logged as a bad one). */
  constructor(
    private config: WebConfig,
    private readonly apply: (config: WebConfig) => void,
    private readonly log: Logger,
    intervalMs = WATCH_INTERVAL_MS,
  ) {
    this.applied = this.seen = this.stamps(config.files);
    this.timer = setInterval(() => this.poll(), intervalMs).unref();
  }

  private stamps(files: readonly string[]): string {
    return files.map(stamp).join('|');
  }

  private poll(): void {
    const now = this.stamps(this.config.files);
    const stable = now === this.seen;
    this.seen = now;
    if (!stable || now === this.applied) return;
    this.applied = now;
    let next: WebConfig;
    try {
      next = loadWebConfig(this.config.file);
      this.apply(next);
    } catch (err) {
      this.log.error('web config not applied: the last good one stays', { err: (err as Error).message });
      return;
    }
    // the new configuration may name other files
    this.config = next;
    this.applied = this.seen = this.stamps(next.files);
    this.log.info('web config applied', { file: next.file, tls: next.tls !== undefined, users: next.users.size });
  }

  stop(): void {
    clearInterval(this.timer);
  }
}
