// SPDX-License-Identifier: Apache-2.0
// The workload labels of the TCP metrics, from the kernel's keys: the owner's
// cgroup id becomes namespace, pod, container (or cgroup, outside pods);
// the remote port of a connect becomes peer_port; the peer's pod number,
// peer_namespace and peer_pod. The overflow entries (every key field 0)
// become "other". --labels leaves labels out, and the kernel then does not
// key by what none of the kept labels needs.
import type { Labels } from '../metrics/collected';
import { OTHER } from '../metrics/series-limit';
import type { WorkloadLabel } from '../options';
import type { Workload } from './resolver';

export const OWNER_LABELS = ['namespace', 'pod', 'container', 'cgroup'] as const satisfies readonly WorkloadLabel[];
export const PEER_LABELS = ['peer_namespace', 'peer_pod'] as const satisfies readonly WorkloadLabel[];

/** What the kernel keys the aggregation maps by, for the labels kept. */
export interface KeyedBy {
  cgroup: boolean;
  peerPort: boolean;
  peer: boolean;
  /** the kept labels of the owner, and of connects (owner, peer port, peer) */
  owner: readonly WorkloadLabel[];
  connect: readonly WorkloadLabel[];
}

export function keyedBy(kept: readonly WorkloadLabel[]): KeyedBy {
  const owner = OWNER_LABELS.filter((l) => kept.includes(l));
  return {
    cgroup: owner.length > 0,
    peerPort: kept.includes('peer_port'),
    peer: PEER_LABELS.some((l) => kept.includes(l)),
    owner,
    connect: kept,
  };
}

/** The owner labels of a workload, those kept. */
export function ownerLabels(w: Workload, keep: readonly WorkloadLabel[]): Labels {
  const all: Record<string, string> = { namespace: w.namespace, pod: w.pod, container: w.container, cgroup: w.cgroup };
  const out: Labels = {};
  for (const l of keep) if (l in all) out[l] = all[l]!;
  return out;
}

/** Every label of keep set to "other": an overflow entry's. */
export function otherLabels(keep: readonly WorkloadLabel[]): Labels {
  const out: Labels = {};
  for (const l of keep) out[l] = OTHER;
  return out;
}

/** A connect's peer labels: its pod's on this node, or empty. */
export function peerLabels(peer: { namespace: string; pod: string } | undefined, keep: readonly WorkloadLabel[]): Labels {
  const out: Labels = {};
  if (keep.includes('peer_namespace')) out.peer_namespace = peer?.namespace ?? '';
  if (keep.includes('peer_pod')) out.peer_pod = peer?.pod ?? '';
  return out;
}
