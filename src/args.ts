// SPDX-License-Identifier: Apache-2.0
// What reaches the flag parser: the command line with its values checked
// where yargs would guess (booleans, numbers), and the BPFNET_* environment
// variables turned into flags. Pure functions of argv, the environment and
// the flags a command has.
import { UsageError } from './errors';

export type FlagType = 'boolean' | 'number' | 'string' | 'array';

/** The environment variable of a flag: --accept-port-limit is
 * BPFNET_ACCEPT_PORT_LIMIT, --web.config.file BPFNET_WEB_CONFIG_FILE. */
export const envName = (flag: string): string => `BPFNET_${flag.toUpperCase().replace(/[-.]/g, '_')}`;

const TRUE = ['1', 'true', 'yes', 'on'];
const FALSE = ['0', 'false', 'no', 'off'];

/** A boolean in the usual spellings, anything else refused. */
export function parseBoolean(where: string, text: string): boolean {
  const t = text.trim().toLowerCase();
  if (TRUE.includes(t)) return true;
  if (FALSE.includes(t)) return false;
  throw new UsageError(`${where} ${JSON.stringify(text)}: not a boolean; give true or false (1/0, yes/no, on/off)`);
}

const NUMBER = /^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$/;

/** A decimal number as text, as a flag of type number takes it; yargs would
 * make "" 0 and "abc" NaN. */
export function checkNumber(where: string, text: string): void {
  if (!NUMBER.test(text.trim())) throw new UsageError(`${where} ${JSON.stringify(text)}: not a number; see --help for what it takes`);
}

/** A variable Kubernetes injects for a Service of the pod's namespace
 * (enableServiceLinks): NAME_SERVICE_HOST, NAME_SERVICE_PORT,
 * NAME_SERVICE_PORT_PORTNAME, NAME_PORT=tcp://IP:PORT and
 * NAME_PORT_PORT_PROTO(_PROTO|_PORT|_ADDR), NAME being the Service's name in
 * capitals with dashes as underscores. A Service named bpfnet-* gives such
 * variables the BPFNET_ prefix of the flags'. */
export function isServiceLink(name: string, value: string): boolean {
  if (/_SERVICE_(?:HOST|PORT(?:_[A-Z0-9_]+)?)$/.test(name)) return true;
  if (/_PORT_\d{1,5}_(?:TCP|UDP|SCTP)(?:_PROTO|_PORT|_ADDR)?$/.test(name)) return true;
  return /_PORT$/.test(name) && /^(?:tcp|udp|sctp):\/\/[^/]*:\d{1,5}$/.test(value);
}

/** Where a flag was given: on the command line, or by the variable named. */
export type Origins = Map<string, string>;

export interface PreparedArgs {
  argv: string[];
  /** flags that came from the environment, and their variables */
  fromEnv: Origins;
  /** service-link variables passed over */
  serviceLinks: string[];
}

/** The flags named on a command line (before "--"), in any of yargs'
 * spellings: --flag, --flag=v, --no-flag. */
export function flagsGiven(argv: readonly string[]): Set<string> {
  const given = new Set<string>();
  for (const token of argv) {
    if (token === '--') break;
    const m = /^--(?:no-)?([^=]+)/.exec(token);
    if (m) given.add(m[1]!);
    if (m && token.startsWith('--no-')) given.add(token.slice(2).split('=')[0]!);
  }
  return given;
}

/** The command line as the parser gets it: a boolean flag's =VALUE in the
 * usual spellings becomes true or false, a number flag's value must be a
 * number, and each BPFNET_* variable whose flag the command has and the
 * command line does not give becomes that flag. Service-link variables are
 * passed over; any other BPFNET_* variable is refused, since it is a flag
 * misspelled. `known` holds every flag of every command, `flags` the command's. */
export function prepareArgs(argv: readonly string[], env: NodeJS.ProcessEnv, flags: ReadonlyMap<string, FlagType>, known: ReadonlySet<string>): PreparedArgs {
  const out: string[] = [];
  let rest = false;
  for (let i = 0; i < argv.length; i++) {
    const token = argv[i]!;
    if (rest || token === '--' || !token.startsWith('--')) {
      rest ||= token === '--';
      out.push(token);
      continue;
    }
    const eq = token.indexOf('=');
    const name = token.slice(2, eq < 0 ? undefined : eq);
    const type = flags.get(name);
    if (type === 'boolean' && eq >= 0) {
      out.push(`--${name}=${parseBoolean(`--${name}`, token.slice(eq + 1))}`);
      continue;
    }
    if (type === 'number') {
      const value = eq >= 0 ? token.slice(eq + 1) : argv[i + 1];
      if (value === undefined) throw new UsageError(`--${name} needs a value; see --help`);
      checkNumber(`--${name}`, value);
    }
    out.push(token);
  }

  const given = flagsGiven(argv);
  const fromEnv: Origins = new Map();
  const serviceLinks: string[] = [];
  const envFlags: string[] = [];
  for (const [variable, value = ''] of Object.entries(env).sort(([a], [b]) => (a < b ? -1 : 1))) {
    if (!variable.startsWith('BPFNET_')) continue;
    if (isServiceLink(variable, value)) {
      serviceLinks.push(variable);
      continue;
    }
    let flag = variable.slice('BPFNET_'.length).toLowerCase().replace(/_/g, '-');
    if (!known.has(flag)) flag = [...known].find((f) => envName(f) === variable) ?? flag; // a flag with dots
    if (!known.has(flag) || envName(flag) !== variable) {
      throw new UsageError(`${variable}: not a setting of bpfnet-exporter; unset it, or see --help (each flag --NAME is also BPFNET_NAME)`);
    }
    const type = flags.get(flag);
    if (type === undefined || given.has(flag)) continue; // another command's, or given on the command line
    if (value.trim() === '') throw new UsageError(`${variable} is empty: give a value, or unset it`);
    if (type === 'boolean') envFlags.push(`--${flag}=${parseBoolean(variable, value)}`);
    else {
      if (type === 'number') checkNumber(variable, value);
      envFlags.push(`--${flag}=${value}`);
    }
    fromEnv.set(flag, variable);
  }
  const end = rest ? out.indexOf('--') : out.length;
  out.splice(end, 0, ...envFlags);
  return { argv: out, fromEnv, serviceLinks };
}

/** A usage message about a flag that came from the environment names the
 * variable instead: "--port 0: ..." becomes "BPFNET_PORT 0: ...". */
export function nameOrigin(message: string, fromEnv: Origins): string {
  const m = /^--([a-z0-9.-]+)/.exec(message);
  const variable = m && fromEnv.get(m[1]!);
  return variable ? variable + message.slice(m[0].length) : message;
}
