// SPDX-License-Identifier: Apache-2.0
// Basic auth against bcrypt hashes (--web.config.file's basic_auth_users).
// bcrypt takes tens of milliseconds by design, and Prometheus sends the same
// credentials at every scrape, so a successful check is remembered (as
// exporter-toolkit does): by a SHA-256 of user, hash and password, never the
// password itself, in a cache of bounded size. A changed hash is a new key,
// so a password taken out of the file stops working at once.
import { createHash } from 'node:crypto';
import bcrypt from 'bcryptjs';

/** Remembered successes at most: a few scrapers and people, with room. */
export const AUTH_CACHE_SIZE = 256;

/** Compared against when the user is unknown, so that an unknown user costs
 * what a wrong password does and the time does not tell which it was. */
const UNKNOWN_USER_HASH = '$2b$10$' + 'a'.repeat(53);

/** The user and password of an Authorization header, or undefined. */
export function parseBasic(header: string | undefined): { user: string; password: string } | undefined {
  const m = /^Basic[ \t]+([A-Za-z0-9+/]+={0,2})[ \t]*$/i.exec(header ?? '');
  if (!m) return undefined;
  const text = Buffer.from(m[1]!, 'base64').toString('utf8');
  const colon = text.indexOf(':');
  return colon < 0 ? undefined : { user: text.slice(0, colon), password: text.slice(colon + 1) };
}

export class BasicAuth {
  /** digests of remembered successes, oldest first; looked up by a digest
   * the caller cannot predict, so the lookup's time tells nothing */
  private readonly cache = new Set<string>();

  constructor(private users: ReadonlyMap<string, string>) {}

  get enabled(): boolean {
    return this.users.size > 0;
  }

  /** Takes new users; remembered successes of changed hashes no longer match. */
  setUsers(users: ReadonlyMap<string, string>): void {
    this.users = users;
  }

  /** Whether the Authorization header names a user with its password. */
  async check(header: string | undefined): Promise<boolean> {
    const given = parseBasic(header);
    if (!given) return false;
    const hash = this.users.get(given.user);
    const key = digest(given.user, hash ?? UNKNOWN_USER_HASH, given.password);
    if (hash !== undefined && this.cache.has(key)) return true;
    const ok = await bcrypt.compare(given.password, hash ?? UNKNOWN_USER_HASH).catch(() => false);
    if (!ok || hash === undefined || this.users.get(given.user) !== hash) return false;
    this.cache.add(key);
    if (this.cache.size > AUTH_CACHE_SIZE) this.cache.delete(this.cache.values().next().value!);
    return true;
  }
}

function digest(user: string, hash: string, password: string): string {
  return createHash('sha256').update(user).update('\0').update(hash).update('\0').update(password).digest('hex');
}
