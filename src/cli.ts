#!/usr/bin/env node
// SPDX-License-Identifier: Apache-2.0
// Command line: flags (each also an environment variable BPFNET_*), commands,
// signals. The only place that exits the process: exit status 2 for usage
// errors, 1 for what the machine lacks or a failure while running.
import yargs, { type Argv } from 'yargs';
import { envName, nameOrigin, prepareArgs, type FlagType, type Origins } from './args';
import { runCheck } from './check';
import { EnvironmentError, UsageError } from './errors';
import { Exporter, formatAddress } from './exporter';
import { formatLine, LOG_FORMATS, LOG_LEVELS, rootLogger, type LogFormat, type LogLevel } from './log';
import { DEFAULT_BPF_DIR, packageVersion, setBpfDir } from './paths';
import { DEFAULTS, PROBE_NAMES, READINESS, WORKLOAD_LABELS, type ExporterOptions, type Readiness } from './options';
import { parseListen } from './server';

/** "a,b" "c" -> ["a","b","c"]: lists come repeated, comma-separated, or both
 * (environment variables hold one string). An empty value is refused: "--pid
 * ''" would otherwise mean no filter at all. */
function list(flag: string, values: unknown): string[] {
  const arr = Array.isArray(values) ? values : values === undefined ? [] : [values];
  return arr.flatMap((v) => {
    const parts = String(v)
      .split(',')
      .map((s) => s.trim());
    if (parts.includes('')) throw new UsageError(`--${flag} ${JSON.stringify(String(v))}: an empty value; give one, or leave the flag out`);
    return parts;
  });
}

function integers(flag: string, values: unknown): number[] {
  return list(flag, values).map((s) => {
    if (!/^\d+$/.test(s)) throw new UsageError(`--${flag} ${s}: not a number; give a positive integer`);
    return Number(s);
  });
}

/** A single-valued flag given twice keeps its last value. */
const lastString = (v: string | string[]): string => (Array.isArray(v) ? v[v.length - 1]! : v);
const lastNumber = (v: number | number[]): number => (Array.isArray(v) ? v[v.length - 1]! : v);
const lastBoolean = (v: boolean | boolean[]): boolean => (Array.isArray(v) ? v[v.length - 1]! : v);

/** Flags of the socket redirect, for run --redirect and the redirect command. */
function redirectFlags<T>(y: Argv<T>) {
  return y
    .option('redirect-cgroup', {
      type: 'string',
      coerce: lastString,
      describe:
        'cgroup v2 directory whose sockets redirect applies to (and its descendants), absolute or relative to the cgroup2 mount; "kubepods": the pods of a Kubernetes node (kubepods.slice or kubepods); required',
    })
    .option('redirect-ports', {
      type: 'array',
      string: true,
      default: [],
      describe: 'redirect only connections with one of these ports, local or remote, at either end (repeatable; at most 64)',
    });
}

/** Flags every long-running command has. */
function serveFlags<T>(y: Argv<T>) {
  return y
    .option('listen', { type: 'string', default: DEFAULTS.listen, coerce: lastString, describe: 'HTTP address for /metrics, /healthz, /readyz' })
    .option('http-connection-limit', {
      type: 'number',
      default: DEFAULTS.httpConnectionLimit,
      coerce: lastNumber,
      describe: 'open HTTP connections at most; at the limit a new connection closes the one idle the longest',
    })
    .option('enable-bpf-stats', {
      type: 'boolean',
      default: false,
      coerce: lastBoolean,
      describe: "turn on the kernel's BPF run time statistics while running (bpfnet_bpf_program_run_seconds_total)",
    })
    .option('log-level', { type: 'string', default: 'info', coerce: lastString, choices: LOG_LEVELS as unknown as string[], describe: 'log verbosity' })
    .option('log-format', {
      type: 'string',
      default: 'logfmt',
      coerce: lastString,
      choices: LOG_FORMATS as unknown as string[],
      describe: 'log lines on stderr: logfmt, or json (one object per line, the same keys)',
    })
    .option('readiness', {
      type: 'string',
      default: 'serving',
      coerce: lastString,
      choices: READINESS as unknown as string[],
      describe:
        '/readyz: "serving" answers 200 once /metrics serves (a probe this kernel cannot attach shows in bpfnet_probe_up and the log), "all-probes" only while every requested probe is attached',
    })
    .option('web.config.file', {
      type: 'string',
      coerce: lastString,
      describe:
        "TLS, client certificates and basic auth for the HTTP endpoints, in exporter-toolkit's web configuration format (as node_exporter's); re-read when it or its certificate files change",
    });
}

function redirectOptions(y: Argv) {
  return redirectFlags(serveFlags(y));
}

function runOptions(y: Argv) {
  return redirectFlags(serveFlags(y))
    .option('probes', {
      type: 'string',
      default: DEFAULTS.probes.join(','),
      coerce: lastString,
      describe: `probes to run, comma-separated: ${PROBE_NAMES.join(', ')} (netsubsys: the old name of netstack)`,
    })
    .option('pid', { type: 'array', string: true, default: [], describe: 'measure only these processes (repeatable)' })
    .option('netns', {
      type: 'array',
      string: true,
      default: [],
      describe: 'measure only these network namespaces: /run/netns/NAME or /proc/PID/ns/net (repeatable)',
    })
    .option('cgroup', {
      type: 'array',
      string: true,
      default: [],
      describe: 'measure only sockets of these cgroup v2 directories and their descendants (repeatable)',
    })
    .option('port', { type: 'array', string: true, default: [], describe: 'measure only connections with this local or remote port (repeatable)' })
    .option('accept-port-limit', {
      type: 'number',
      default: DEFAULTS.acceptPortLimit,
      coerce: lastNumber,
      describe: 'label sets (port, command) of bpfnet_tcp_accepts_total; accepts beyond them count as port="other"',
    })
    .option('max-series', {
      type: 'number',
      default: DEFAULTS.maxSeries,
      coerce: lastNumber,
      describe: 'series per TCP metric at most; label sets beyond are folded into one whose workload labels say "other" (bpfnet_series_folded_total)',
    })
    .option('labels', {
      type: 'string',
      coerce: lastString,
      describe: `workload labels to leave out of the TCP metrics, comma-separated, each with a minus: ${WORKLOAD_LABELS.map((l) => `-${l}`).join(',')}`,
    })
    .option('kubelet-containers-dir', {
      type: 'string',
      default: DEFAULTS.kubeletContainersDir,
      coerce: lastString,
      describe: "kubelet's container log links (<pod>_<namespace>_<container>-<id>.log), which name the pods and containers of cgroups",
    })
    .option('netstack-series-ttl', {
      type: 'number',
      default: DEFAULTS.netstackSeriesTtl,
      coerce: lastNumber,
      describe: 'seconds without a packet after which a netstack series (an interface gone) is dropped; 0: never',
    })
    .option('sidecar-comm', {
      type: 'array',
      string: true,
      default: [],
      describe:
        "time these sidecar proxies, by command name (envoy,pilot-agent): their accept to connect upstream, and that connect to the application's accept (repeatable)",
    })
    .option('sidecar-pid', { type: 'array', string: true, default: [], describe: 'time these sidecar proxies, by process id (repeatable)' })
    .option('otlp-endpoint', {
      type: 'string',
      coerce: lastString,
      describe: 'send a span per TCP connection to this OTLP/HTTP collector (base URL, e.g. http://localhost:4318); OTEL_EXPORTER_OTLP_ENDPOINT works too',
    })
    .option('trace-sample-ratio', {
      type: 'number',
      coerce: lastNumber,
      describe: 'share of connections (traces) to send spans for, 0 to 1; default OTEL_TRACES_SAMPLER(_ARG), else 1',
    })
    .option('event-ring-bytes', {
      type: 'number',
      default: DEFAULTS.eventRingBytes,
      coerce: lastNumber,
      describe: 'size of the kernel ring buffer that carries connection events to the spans: a power of two, at least 4096',
    })
    .option('redirect', {
      type: 'boolean',
      default: false,
      coerce: lastBoolean,
      describe: 'also make same-host TCP connections skip the TCP/IP stack (see the redirect command)',
    });
}

type RunArgs = Awaited<ReturnType<typeof runOptions>['argv']>;
type RedirectArgs = Awaited<ReturnType<typeof redirectOptions>['argv']>;

/** Options of the redirect command: the redirect and no tracing probes. */
export function redirectExporterOptions(a: RedirectArgs): ExporterOptions {
  return {
    listen: parseListen(a.listen),
    readiness: a.readiness as Readiness,
    httpConnectionLimit: a['http-connection-limit'],
    webConfigFile: a['web.config.file'],
    probes: [],
    filters: { pids: [], netns: [], cgroups: [], ports: [] },
    enableBpfStats: a['enable-bpf-stats'],
    acceptPortLimit: DEFAULTS.acceptPortLimit,
    netstackSeriesTtl: DEFAULTS.netstackSeriesTtl,
    redirect: { cgroup: a['redirect-cgroup'], ports: integers('redirect-ports', a['redirect-ports']) },
  };
}

/** The run command's options as given; src/options.ts checks and resolves them. */
export function exporterOptions(a: RunArgs): ExporterOptions {
  return {
    listen: parseListen(a.listen),
    readiness: a.readiness as Readiness,
    probes: a.probes.trim() === '' ? [] : list('probes', a.probes),
    httpConnectionLimit: a['http-connection-limit'],
    webConfigFile: a['web.config.file'],
    filters: {
      pids: integers('pid', a.pid),
      netns: list('netns', a.netns),
      cgroups: list('cgroup', a.cgroup),
      ports: integers('port', a.port),
    },
    enableBpfStats: a['enable-bpf-stats'],
    acceptPortLimit: a['accept-port-limit'],
    netstackSeriesTtl: a['netstack-series-ttl'],
    attribution: { maxSeries: a['max-series'], labels: a.labels, containersDir: a['kubelet-containers-dir'] },
    tracing: { endpoint: a['otlp-endpoint'], sampleRatio: a['trace-sample-ratio'] },
    sidecars: { comms: list('sidecar-comm', a['sidecar-comm']), pids: integers('sidecar-pid', a['sidecar-pid']) },
    eventRingBytes: a['event-ring-bytes'],
    redirect: a.redirect ? { cgroup: a['redirect-cgroup'], ports: integers('redirect-ports', a['redirect-ports']) } : undefined,
  };
}

async function run(a: { 'log-level': string; 'log-format': string }, opts: ExporterOptions): Promise<number> {
  const log = rootLogger;
  log.setLevel(a['log-level'] as LogLevel);
  log.setFormat(a['log-format'] as LogFormat);
  const exporter = await Exporter.start(opts, log);
  log.info('bpfnet-exporter running', { version: packageVersion(), address: formatAddress(exporter.address!) });
  return new Promise<number>((resolve) => {
    let stopping = false;
    const stop = (signal: string) => {
      if (stopping) return;
      stopping = true;
      log.info('stopping', { signal });
      exporter.stop().then(
        () => resolve(0),
        (err: Error) => {
          log.error('cleanup failed', { err: err.message });
          resolve(1);
        },
      );
    };
    for (const signal of STOP_SIGNALS) process.on(signal, () => stop(signal));
  });
}

/** Signals that end the process unless handled: each stops it cleanly (links
 * detached, pins removed, exit status 0); SIGHUP too, as when the terminal it
 * runs in closes. Left alone: SIGPROF (Node.js's profiler), SIGPIPE (ignored
 * by Node.js), and the faults a process cannot go on from. SIGUSR1 is taken
 * (IGNORED_SIGNALS) so that it cannot open Node.js's inspector. */
export const STOP_SIGNALS: readonly NodeJS.Signals[] = [
  'SIGTERM',
  'SIGINT',
  'SIGHUP',
  'SIGQUIT',
  'SIGUSR2',
  'SIGALRM',
  'SIGVTALRM',
  'SIGXCPU',
  'SIGXFSZ',
  'SIGPOLL',
  'SIGPWR',
  'SIGSTKFLT',
];

/** Flags every command has. */
function globalFlags<T>(y: Argv<T>) {
  return y.option('bpf-dir', {
    type: 'string',
    default: DEFAULT_BPF_DIR,
    coerce: lastString,
    describe: 'directory of the compiled BPF objects (*.bpf.o)',
    global: true,
  });
}

const COMMANDS: Record<string, (y: Argv) => Argv> = {
  run: runOptions as unknown as (y: Argv) => Argv,
  redirect: redirectOptions as unknown as (y: Argv) => Argv,
  check: (y) => y,
};

/** Each flag a command has, and its type. */
function flagsOf(command: string): Map<string, FlagType> {
  // getOptions is yargs' own, missing from its typings
  const y = COMMANDS[command]!(globalFlags(yargs([]))) as unknown as { getOptions(): Record<FlagType, string[]> };
  const o = y.getOptions();
  const flags = new Map<string, FlagType>();
  for (const type of ['boolean', 'number', 'string', 'array'] as const) for (const f of o[type]) flags.set(f, type);
  return flags;
}

/** The command a command line names (run when it names none): its first
 * word that is not a flag nor a flag's value. */
function commandOf(argv: readonly string[], flags: ReadonlyMap<string, FlagType>): string {
  for (let i = 0; i < argv.length; i++) {
    const t = argv[i]!;
    if (t === '--') break;
    if (!t.startsWith('-')) return t in COMMANDS ? t : 'run';
    const type = flags.get(t.replace(/^--?/, ''));
    if (!t.includes('=') && type !== undefined && type !== 'boolean') i++;
  }
  return 'run';
}

/** Signals with no meaning here that would otherwise do something: SIGUSR1
 * opens Node.js's inspector on 127.0.0.1:9229 unless the process listens for
 * it, and from a root process holding BPF programs that is a door for any
 * local process. Each is logged and ignored. */
export const IGNORED_SIGNALS: readonly NodeJS.Signals[] = ['SIGUSR1'];

// dot-notation off: --web.config.file is one flag (exporter-toolkit's name), not
// web.config.file nested
function parser(argv: string[]) {
  return globalFlags(yargs(argv))
    .scriptName('bpfnet-exporter')
    .parserConfiguration({ 'dot-notation': false })
    .command(['run', '$0'], 'measure TCP in the kernel and serve Prometheus metrics (default)', runOptions)
    .command(
      'redirect',
      'make same-host TCP connections of a cgroup skip the TCP/IP stack (sockops + sk_msg), and serve its counters; no tracing probes',
      redirectOptions,
    )
    .command('check', 'print what this kernel supports for each probe and attach type')
    .strict()
    .version(packageVersion())
    .help()
    .wrap(Math.min(110, process.stdout.columns || 110))
    .fail((msg, err) => {
      const text = msg
        .replace(/:\s*\n\s*/g, ': ')
        .replace(/\s*\n\s*/g, '; ')
        .replace(/\s+/g, ' ');
      throw err ?? new UsageError(`${text}; see --help`);
    });
}

/** Flags from the environment, for naming them in an error. */
let fromEnv: Origins = new Map();

async function main(argv: string[]): Promise<number> {
  const all = new Map(Object.keys(COMMANDS).flatMap((c) => [...flagsOf(c)]));
  const prepared = prepareArgs(argv, process.env, flagsOf(commandOf(argv, all)), new Set(all.keys()));
  fromEnv = prepared.fromEnv;
  const args = await parser(prepared.argv).parseAsync();
  setBpfDir(args['bpf-dir']);
  if (args._[0] === 'check') return runCheck(process.stdout);
  if (args.help || args.version) return 0;
  if (args._[0] === 'redirect') return run(args as unknown as RedirectArgs, redirectExporterOptions(args as unknown as RedirectArgs));
  return run(args as unknown as RunArgs, exporterOptions(args as unknown as RunArgs));
}

function oneLine(err: unknown): [string, number] {
  if (err instanceof UsageError) return [nameOrigin(err.message, fromEnv), err.exitCode];
  if (err instanceof EnvironmentError) return [err.message, err.exitCode];
  const e = err as Error;
  return [`${e?.message ?? String(err)}`, 1];
}

/** The log format a command line asks for, read before it is parsed, so
 * that what goes wrong while parsing follows it: the last --log-format
 * given, else BPFNET_LOG_FORMAT; logfmt when neither names a known format. */
export function requestedLogFormat(argv: readonly string[], env: NodeJS.ProcessEnv): LogFormat {
  let given: string | undefined;
  for (let i = 0; i < argv.length && argv[i] !== '--'; i++) {
    if (argv[i] === '--log-format') given = argv[++i];
    else if (argv[i]!.startsWith('--log-format=')) given = argv[i]!.slice('--log-format='.length);
  }
  given ??= env[envName('log-format')]?.trim();
  return (LOG_FORMATS as readonly string[]).includes(given ?? '') ? (given as LogFormat) : 'logfmt';
}

/** The line that ends the program: "bpfnet-exporter: MESSAGE", or a JSON log line. */
export function exitLine(format: LogFormat, message: string): string {
  return format === 'json' ? formatLine('json', 'error', undefined, message, {}) : `bpfnet-exporter: ${message}`;
}

/** Runs the command line and exits with its status. */
export function runCli(argv: string[] = process.argv.slice(2)): void {
  rootLogger.setFormat(requestedLogFormat(argv, process.env));
  for (const signal of IGNORED_SIGNALS) process.on(signal, () => rootLogger.warn('signal ignored: it has no meaning here', { signal }));
  process.on('uncaughtException', (err) => {
    rootLogger.error('unexpected error', { err: err.stack ?? err.message });
    process.exit(1);
  });
  main(argv).then(
    (code) => process.exit(code),
    (err) => {
      const [message, code] = oneLine(err);
      process.stderr.write(exitLine(rootLogger.format, message) + '\n');
      process.exit(code);
    },
  );
}

if (require.main === module) runCli();
