// SPDX-License-Identifier: Apache-2.0
// Every option of the exporter, from what a command line (or a caller) gives
// to what the components get: defaults, checks (one line and exit status 2
// for a bad value), resolution (paths to namespace inodes and cgroup ids,
// pids to commands, "kubepods" to the pods' cgroup). Each component receives
// only its own part.
import fs from 'node:fs';
import path from 'node:path';
import { EnvironmentError, UsageError } from './errors';
import { NO_FILTERS, resolveCgroupDir, resolveFilters, resolvePort, type FilterSpec, type ResolvedFilters } from './filters';
import { SOCK_REDIRECT } from './generated/sock-redirect';
import { TCP_LIFECYCLE } from './generated/tcp-lifecycle';
import { escapedText } from './libbpf/text';
import { HTTP_DEFAULTS, type ListenAddress } from './server';
import { cgroup2Mount, openFileLimit } from './system';
import { resolveTracing, type TracingConfig, type TracingSpec } from './tracing/tracing';
import { loadWebConfig, type WebConfig } from './web-config';

/** The probes of the TCP lifecycle object, and every probe --probes takes. */
export const TCP_PROBES = ['connect', 'accept', 'close'] as const;
export type TcpProbe = (typeof TCP_PROBES)[number];
export const PROBE_NAMES: readonly string[] = [...TCP_PROBES, 'netstack'];
/** Earlier probe names, still taken for one release: the name each has now. */
export const DEPRECATED_PROBES: Readonly<Record<string, string>> = { netsubsys: 'netstack' };

/** What /readyz waits for: /metrics serving, or every requested probe attached. */
export const READINESS = ['serving', 'all-probes'] as const;
export type Readiness = (typeof READINESS)[number];

export const DEFAULTS = {
  listen: '0.0.0.0:19435',
  readiness: 'serving' as Readiness,
  httpConnectionLimit: HTTP_DEFAULTS.maxConnections,
  probes: TCP_PROBES as readonly string[],
  acceptPortLimit: 1024,
  netstackSeriesTtl: 600,
  eventRingBytes: 4 << 20,
  maxSeries: 10_000,
  kubeletContainersDir: '/var/log/containers',
} as const;

/** The labels that say whose a connection is, on every TCP metric (peer_*:
 * connects only); --labels leaves some out. */
export const WORKLOAD_LABELS = ['namespace', 'pod', 'container', 'cgroup', 'peer_port', 'peer_namespace', 'peer_pod'] as const;
export type WorkloadLabel = (typeof WORKLOAD_LABELS)[number];

/** The most --max-series takes: the kernel's maps are bounded by it too. */
const MAX_MAX_SERIES = 1_000_000;

/** The longest --netstack-series-ttl, seconds: a year. */
const MAX_SERIES_TTL = 365 * 86400;

/** What the command line gives: values as typed, lists split, nothing checked. */
export interface ExporterOptions {
  listen: ListenAddress;
  /** what /readyz waits for; default serving */
  readiness?: Readiness;
  /** open HTTP connections at most; default DEFAULTS.httpConnectionLimit */
  httpConnectionLimit?: number;
  probes: readonly string[];
  filters: FilterSpec;
  enableBpfStats: boolean;
  acceptPortLimit: number;
  netstackSeriesTtl: number;
  /** spans over OTLP/HTTP, when an endpoint is given here or in OTEL_* */
  tracing?: TracingSpec;
  /** sidecar proxies to time */
  sidecars?: SidecarSpec;
  /** the connection events' ring buffer, bytes */
  eventRingBytes?: number;
  /** socket redirect, when wanted */
  redirect?: RedirectSpec;
  /** workload labels of the TCP metrics */
  attribution?: AttributionSpec;
  /** --web.config.file: TLS and basic auth of the HTTP endpoints */
  webConfigFile?: string;
}

export interface AttributionSpec {
  maxSeries?: number;
  /** "-cgroup,-peer_port": labels to leave out */
  labels?: string;
  containersDir?: string;
}

export interface RedirectSpec {
  /** cgroup v2 directory (absolute, or relative to the cgroup2 mount), or
   * "kubepods"; required: redirect changes how the node's traffic flows */
  cgroup?: string;
  ports: readonly number[];
}

export interface SidecarSpec {
  comms: readonly string[];
  pids: readonly number[];
}

/** Every option, checked and resolved. */
export interface Options {
  listen: ListenAddress;
  readiness: Readiness;
  httpConnectionLimit: number;
  enableBpfStats: boolean;
  /** the probes asked for, in the order given */
  probes: readonly string[];
  /** deprecated names given, and what they are called now, for a warning */
  renamed: readonly { given: string; now: string }[];
  filters: ResolvedFilters;
  tracing?: TracingConfig;
  /** the TCP lifecycle object's part, when one of its probes is asked for */
  tcp?: TcpOptions;
  netstack?: NetstackOptions;
  redirect?: RedirectOptions;
  /** TLS and basic auth, as read at start (the server re-reads it) */
  webConfig?: WebConfig;
}

export interface TcpOptions {
  probes: readonly TcpProbe[];
  /** how many distinct listening ports get their own accepts series */
  acceptPortLimit: number;
  /** sidecar proxies to time (--sidecar-comm, --sidecar-pid) */
  sidecars: readonly Sidecar[];
  /** size of the connection events' ring buffer: a power of two, at least a page */
  eventRingBytes: number;
  attribution: Attribution;
}

export interface Attribution {
  /** series per metric at most, and entries per aggregation map */
  maxSeries: number;
  /** the workload labels kept, in WORKLOAD_LABELS order */
  labels: readonly WorkloadLabel[];
  /** kubelet's container log links */
  containersDir: string;
  /** where cgroup v2 is mounted; undefined: none (no workload names) */
  cgroupMount: string | undefined;
}

export interface NetstackOptions {
  /** seconds without a sample after which a series is forgotten; 0: never */
  seriesTtl: number;
}

export interface RedirectOptions {
  /** cgroup v2 directory and its id */
  cgroup: { dir: string; id: bigint };
  /** only pairs with one of these ports (either end); empty: all */
  ports: readonly number[];
}

/** A sidecar as the kernel matches it: its label, and its command or pids. */
export interface Sidecar {
  name: string;
  comms: string[];
  pids: number[];
}

/** Checks and resolves every option; throws UsageError (or EnvironmentError
 * for what the machine lacks) with one line naming the flag and the fix. */
export function resolveOptions(o: ExporterOptions): Options {
  const renamed = o.probes.filter((p) => p in DEPRECATED_PROBES).map((given) => ({ given, now: DEPRECATED_PROBES[given]! }));
  const probes = [...new Set(o.probes.map((p) => DEPRECATED_PROBES[p] ?? p))];
  checkProbeNames(probes, o.redirect !== undefined);
  const limit = o.acceptPortLimit;
  if (!Number.isInteger(limit) || limit < 1 || limit > 65535) {
    throw new UsageError(`--accept-port-limit ${limit}: give an integer from 1 to 65535`);
  }
  const ttl = o.netstackSeriesTtl;
  // under a second the sweep would run more often than the series change
  if (!(ttl === 0 || (ttl >= 1 && ttl <= MAX_SERIES_TTL))) {
    throw new UsageError(`--netstack-series-ttl ${ttl}: give seconds, from 1 to ${MAX_SERIES_TTL}, or 0 (never)`);
  }
  const eventRingBytes = ringBytes(o.eventRingBytes ?? DEFAULTS.eventRingBytes);
  const tracing = resolveTracing(o.tracing ?? {});
  const sidecars = resolveSidecars(o.sidecars ?? { comms: [], pids: [] });
  const tcpProbes = TCP_PROBES.filter((p) => probes.includes(p));
  if (tracing && !tcpProbes.length) {
    throw new UsageError(`spans come from the TCP probes: add one of ${TCP_PROBES.join(',')} to --probes, or give no OTLP endpoint`);
  }
  if (sidecars.length && !tcpProbes.length) {
    throw new UsageError(`sidecars are timed by the TCP probes: add one of ${TCP_PROBES.join(',')} to --probes, or name no sidecar`);
  }
  return {
    listen: o.listen,
    readiness: o.readiness ?? DEFAULTS.readiness,
    httpConnectionLimit: connectionLimit(o.httpConnectionLimit ?? DEFAULTS.httpConnectionLimit),
    enableBpfStats: o.enableBpfStats,
    filters: resolveFilters(o.filters),
    tracing,
    renamed,
    ...probeParts(probes, { acceptPortLimit: limit, sidecars, eventRingBytes, attribution: resolveAttribution(o.attribution ?? {}) }, { seriesTtl: ttl }),
    redirect: o.redirect && resolveRedirect(o.redirect),
    webConfig: resolveWebConfig(o.webConfigFile),
  };
}

function resolveWebConfig(file: string | undefined): WebConfig | undefined {
  if (file === undefined) return undefined;
  if (file.trim() === '') throw new UsageError('--web.config.file is empty: give the web configuration file (TLS, basic auth), or leave the flag out');
  return loadWebConfig(file);
}

/** The options of these probes with their defaults, and nothing else: what
 * the check command starts each probe with. */
export function defaultOptions(probes: readonly string[]): Options {
  return {
    listen: { host: '127.0.0.1', port: 0 },
    readiness: DEFAULTS.readiness,
    httpConnectionLimit: DEFAULTS.httpConnectionLimit,
    enableBpfStats: false,
    filters: NO_FILTERS,
    renamed: [],
    ...probeParts(
      probes,
      { acceptPortLimit: DEFAULTS.acceptPortLimit, sidecars: [], eventRingBytes: DEFAULTS.eventRingBytes, attribution: resolveAttribution({}) },
      { seriesTtl: DEFAULTS.netstackSeriesTtl },
    ),
  };
}

/** Each probe component's part, for the probes asked for. */
function probeParts(probes: readonly string[], tcp: Omit<TcpOptions, 'probes'>, netstack: NetstackOptions): Pick<Options, 'probes' | 'tcp' | 'netstack'> {
  const tcpProbes = TCP_PROBES.filter((p) => probes.includes(p));
  return {
    probes,
    tcp: tcpProbes.length ? { probes: tcpProbes, ...tcp } : undefined,
    netstack: probes.includes('netstack') ? netstack : undefined,
  };
}

/** Checks --max-series, --labels and --kubelet-containers-dir. */
export function resolveAttribution(a: AttributionSpec): Attribution {
  const maxSeries = a.maxSeries ?? DEFAULTS.maxSeries;
  if (!Number.isInteger(maxSeries) || maxSeries < 1 || maxSeries > MAX_MAX_SERIES) {
    throw new UsageError(`--max-series ${maxSeries}: give an integer from 1 to ${MAX_MAX_SERIES}`);
  }
  const dropped = new Set<string>();
  if (a.labels !== undefined) {
    const known = WORKLOAD_LABELS.map((l) => `-${l}`).join(',');
    for (const item of a.labels.split(',')) {
      const name = item.trim().replace(/^-/, '');
      if (!item.trim().startsWith('-') || !(WORKLOAD_LABELS as readonly string[]).includes(name)) {
        throw new UsageError(`--labels ${JSON.stringify(a.labels)}: "${item}" is not a label to leave out; give some of ${known}, or leave the flag out`);
      }
      dropped.add(name);
    }
  }
  const containersDir = a.containersDir ?? DEFAULTS.kubeletContainersDir;
  if (containersDir.trim() === '')
    throw new UsageError("--kubelet-containers-dir is empty: give the directory of kubelet's container log links, or leave the flag out");
  if (containersDir !== DEFAULTS.kubeletContainersDir && !fs.existsSync(containersDir)) {
    throw new UsageError(
      `--kubelet-containers-dir ${containersDir}: no such directory; give the directory of kubelet's container log links (${DEFAULTS.kubeletContainersDir})`,
    );
  }
  return {
    maxSeries,
    labels: WORKLOAD_LABELS.filter((l) => !dropped.has(l)),
    containersDir: path.resolve(containersDir),
    cgroupMount: cgroup2Mount(),
  };
}

function checkProbeNames(probes: readonly string[], redirect: boolean): void {
  if (probes.length === 0 && !redirect) throw new UsageError(`--probes is empty; give some of ${PROBE_NAMES.join(',')}`);
  for (const p of probes) {
    if (!PROBE_NAMES.includes(p)) throw new UsageError(`--probes: unknown probe "${p}"; known probes: ${PROBE_NAMES.join(',')}`);
  }
}

/** HTTP connections may hold at most half the open-file limit: the rest is
 * for the BPF objects, maps and links, and whatever else the process opens. */
export function connectionLimit(n: number, fileLimit = openFileLimit()): number {
  const most = fileLimit === undefined ? 65535 : Math.min(65535, Math.floor(fileLimit / 2));
  if (!Number.isInteger(n) || n < 1 || n > most) {
    const why = fileLimit === undefined ? '' : ` (half the open-file limit, ${fileLimit}: ulimit -n)`;
    throw new UsageError(`--http-connection-limit ${n}: give an integer from 1 to ${most}${why}`);
  }
  return n;
}

function ringBytes(n: number): number {
  const page = 4096;
  if (!Number.isInteger(n) || n < page || (n & (n - 1)) !== 0 || n > 2 ** 30) {
    throw new UsageError(`--event-ring-bytes ${n}: give a power of two from ${page} to ${2 ** 30} (4194304 is the default)`);
  }
  return n;
}

/** The sidecar slots of the TCP object's statistics (bpf/tcp-lifecycle.h). */
export const MAX_SIDECARS = TCP_LIFECYCLE.maps.sidecar_stats.maxEntries;
/** A command name's room in the kernel's records, NUL included (TASK_COMM_LEN). */
export const COMM_LEN = TCP_LIFECYCLE.structs.accept_key.fields.comm.length;

/** One sidecar per distinct name: a command, or a pid's command. */
export function resolveSidecars(spec: SidecarSpec): Sidecar[] {
  const byName = new Map<string, Sidecar>();
  const get = (name: string) => byName.get(name) ?? byName.set(name, { name, comms: [], pids: [] }).get(name)!;
  for (const comm of spec.comms) {
    if (comm === '' || Buffer.byteLength(comm) >= COMM_LEN) {
      throw new UsageError(`--sidecar-comm ${JSON.stringify(comm)}: give a command name of 1 to ${COMM_LEN - 1} bytes, as ps -o comm shows it`);
    }
    get(comm).comms.push(comm);
  }
  for (const pid of spec.pids) {
    let comm: string;
    try {
      const bytes = fs.readFileSync(`/proc/${pid}/comm`);
      comm = escapedText(bytes, 0, bytes.length - (bytes.at(-1) === 0x0a ? 1 : 0)); // as its label: any bytes
    } catch {
      throw new UsageError(`--sidecar-pid ${pid}: no such process; check the pid (ps -p ${pid})`);
    }
    get(comm).pids.push(pid);
  }
  if (byName.size > MAX_SIDECARS) throw new UsageError(`--sidecar-comm and --sidecar-pid name ${byName.size} sidecars; give at most ${MAX_SIDECARS}`);
  return [...byName.values()];
}

/** The most ports --redirect-ports takes (PORTS_MAX in bpf/sock-redirect.bpf.c). */
export const MAX_REDIRECT_PORTS = SOCK_REDIRECT.maps.redirect_ports.maxEntries;

/** The redirect's cgroup and ports, checked. */
export function resolveRedirect(spec: RedirectSpec): RedirectOptions {
  const mount = cgroup2Mount();
  if (!mount) throw new EnvironmentError('redirect needs cgroup v2, and none is mounted: mount -t cgroup2 none /sys/fs/cgroup');
  const cgroup = spec.cgroup?.trim();
  if (!cgroup) {
    throw new UsageError(
      `--redirect-cgroup is missing: name the cgroup whose sockets to redirect: kubepods (the pods of a Kubernetes node), ${mount} (every process of this host), or a directory under it`,
    );
  }
  const ports = [...new Set(spec.ports.map((p) => resolvePort(p, '--redirect-ports')))];
  if (ports.length > MAX_REDIRECT_PORTS) {
    throw new UsageError(`--redirect-ports: ${ports.length} ports; give at most ${MAX_REDIRECT_PORTS}`);
  }
  return { cgroup: resolveCgroupDir(cgroup === KUBEPODS ? podsCgroup(mount) : cgroup, '--redirect-cgroup'), ports };
}

/** --redirect-cgroup kubepods: the pods' cgroup of a Kubernetes node. */
export const KUBEPODS = 'kubepods';

/** Where kubelet puts pods under a cgroup2 mount: kubepods.slice (systemd
 * cgroup driver) or kubepods (cgroupfs). */
export function podsCgroup(mount: string): string {
  const found = ['kubepods.slice', 'kubepods'].map((d) => path.join(mount, d)).find((d) => fs.existsSync(d));
  if (!found) {
    throw new UsageError(
      `--redirect-cgroup ${KUBEPODS}: neither kubepods.slice (systemd cgroup driver) nor kubepods (cgroupfs) is under ${mount}; on a host that is not a Kubernetes node, name the cgroup to redirect`,
    );
  }
  return found;
}
