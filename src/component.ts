// SPDX-License-Identifier: Apache-2.0
// What every component provides: one BPF object and what it serves (the TCP
// lifecycle probes, the network stack probe, the socket redirect), with one
// life: checked, started (load with fallbacks, attach, register metrics),
// asked for its status and programs, closed. The exporter loops over them
// and knows none by name.
import type { Registry } from 'prom-client';
import { EnvironmentError, UsageError } from './errors';
import { BpfError, BpfObject, type BpfLink, type BpfProgram } from './libbpf';
import type { ObjectBinding } from './libbpf/binding';
import { bpfDirGiven, bpfObjectPath } from './paths';
import type { Logger } from './log';
import type { ScrapeFailures } from './metrics/validate';
import type { FilteredObject, ResolvedFilters } from './filters';
import type { ConnEvent } from './tracing/conn-event';
import type { Options } from './options';

export interface ProbeStatus {
  up: boolean;
  /** why not, when down */
  reason?: string;
}

/** What a component is started with; O: its own part of the options. */
export interface ProbeContext<O = unknown> {
  log: Logger;
  filters: ResolvedFilters;
  registry: Registry;
  failures: ScrapeFailures;
  options: O;
  /** where connection events go, when spans are wanted; undefined: no events */
  events?: ConnEventSink;
}

export interface ConnEventSink {
  onConnEvent(e: ConnEvent): void;
}

export interface RunningComponent {
  /** one entry per requested probe, or the component's name for a feature */
  readonly status: ReadonlyMap<string, ProbeStatus>;
  /** loaded programs, for the kernel's run statistics */
  programs(): BpfProgram[];
  /** loaded objects holding filter maps */
  objects(): BpfObject<FilteredObject>[];
  /** detaches every link and closes every object; safe to call twice */
  close(): void | Promise<void>;
}

export interface Component<O = unknown> {
  /** its name in status when it is a feature of its own (redirect) */
  readonly name: string;
  /** the probes it provides, as --probes names them; none for a feature */
  readonly probes: readonly string[];
  /** its BPF object */
  readonly binding: ObjectBinding;
  /** its part of the options; undefined: not asked for */
  select(options: Options): O | undefined;
  /** checks that need no BPF object, before the HTTP port is bound; throws
   * UsageError or EnvironmentError */
  preflight?(options: O): void;
  /** Loads, attaches and registers metrics for what its options ask. A
   * probe that cannot run is reported down in status; only a component
   * whose failure must stop the exporter (the redirect) throws. */
  start(ctx: ProbeContext<O>): RunningComponent;
}

/** Fails with one line unless the component's object file parses and is
 * the one this build was made with: a corrupt or foreign object is an error
 * at start, not a probe reported down. Nothing reaches the kernel. */
export function checkObjectFile(c: Component): void {
  const file = bpfObjectPath(c.binding.file);
  try {
    BpfObject.open(file, c.binding).close();
  } catch (err) {
    const why = err instanceof BpfError ? err.reason() : (err as Error).message.replace(`${file} `, '');
    if (bpfDirGiven()) throw new UsageError(`--bpf-dir: cannot use ${file} (${why}); give the directory of this build's BPF objects`);
    throw new EnvironmentError(`cannot use ${file} (${why}); rebuild with npm run build (or scripts/setup)`);
  }
}

/** Destroys every link (taking them out of links), warning of those that
 * cannot be: a close goes on whatever fails. */
export function destroyLinks(links: BpfLink[], log: Logger): void {
  for (const link of links.splice(0)) {
    try {
      link.destroy();
    } catch (err) {
      log.warn('cannot destroy link', { target: link.target, err: (err as Error).message });
    }
  }
}
