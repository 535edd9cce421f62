// SPDX-License-Identifier: Apache-2.0
// What kubelet's node-local layouts say about a workload, without asking the
// API server:
// - a cgroup path names the pod (its uid) and the container (its runtime id):
//     systemd driver: kubepods.slice/kubepods-burstable.slice/
//       kubepods-burstable-pod<uid with _>.slice/cri-containerd-<id>.scope
//       (crio-<id>.scope, docker-<id>.scope; Guaranteed pods directly under
//       kubepods.slice: kubepods-pod<uid>.slice)
//     cgroupfs driver: kubepods/burstable/pod<uid>/<id> (cri-o: crio-<id>;
//       Guaranteed: kubepods/pod<uid>/<id>)
//   wherever the kubepods cgroup sits (kubelet's --cgroup-root, a nested
//   node such as kind's);
// - /var/log/containers/<pod>_<namespace>_<container>-<id>.log, the link
//   kubelet makes for every container, names its pod, namespace and
//   container; it points to /var/log/pods/<namespace>_<pod>_<uid>/...

/** A pod's uid and a container's id, as a cgroup path gives them. */
export interface CgroupWorkload {
  podUid: string;
  /** empty for the pod's own cgroup (no container) */
  containerId: string;
}

const UID = '[0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{12}';
const SYSTEMD_POD = new RegExp(`^(?:[a-z0-9]+-)*kubepods(?:-(?:burstable|besteffort))?-pod(${UID})\\.slice$`);
const CGROUPFS_POD = new RegExp(`^pod(${UID})$`);
// cgroupfs driver: the id (containerd, docker) or crio-<id> (cri-o)
const CONTAINER_DIR = /^(?:crio-)?([0-9a-f]{64})$/;
// runtime scopes of the systemd driver: cri-containerd-, crio-, docker-, and
// cri-o's conmon scope (crio-conmon-<id>.scope) which is no container
const SYSTEMD_CONTAINER = /^(?:cri-containerd|crio|docker)-([0-9a-f]{64})\.scope$/;

/** The pod and container a cgroup path (relative to the cgroup2 mount) is
 * of; undefined when it is no pod's. */
export function parseCgroupPath(rel: string): CgroupWorkload | undefined {
  const parts = rel.split('/');
  for (let i = 0; i < parts.length; i++) {
    const part = parts[i]!;
    const m = SYSTEMD_POD.exec(part) ?? CGROUPFS_POD.exec(part);
    if (!m || !underKubepods(parts.slice(0, i))) continue;
    const podUid = m[1]!.replace(/_/g, '-');
    const next = parts[i + 1];
    if (next === undefined) return { podUid, containerId: '' };
    const id = SYSTEMD_CONTAINER.exec(next)?.[1] ?? CONTAINER_DIR.exec(next)?.[1] ?? '';
    return { podUid, containerId: id };
  }
  return undefined;
}

/** The pod cgroup's ancestors: a kubepods cgroup, then at most a QoS one. */
function underKubepods(above: string[]): boolean {
  const last = above[above.length - 1];
  if (last === undefined) return false;
  if (/^kubepods(\.slice)?$/.test(last) || /(^|-)kubepods\.slice$/.test(last)) return true;
  const qos = /(^|-)(burstable|besteffort)(\.slice)?$/.test(last);
  return qos && above.length >= 2 && /(^|-)kubepods(\.slice)?$/.test(above[above.length - 2]!);
}

/** A container as its kubelet log link names it. */
export interface LoggedContainer {
  namespace: string;
  pod: string;
  container: string;
  containerId: string;
}

// pod names are DNS subdomains, namespaces and containers DNS labels: none
// holds "_"; a container name may hold "-", so the id is the last 64 hex
const LOG_NAME = /^([^_]+)_([^_]+)_(.+)-([0-9a-f]{64})\.log$/;

/** The container a /var/log/containers file name is of; undefined if the
 * name is not kubelet's. */
export function parseContainerLogName(name: string): LoggedContainer | undefined {
  const m = LOG_NAME.exec(name);
  if (!m) return undefined;
  return { pod: m[1]!, namespace: m[2]!, container: m[3]!, containerId: m[4]! };
}

/** The pod uid in a link's target: /var/log/pods/<namespace>_<pod>_<uid>/... */
export function podUidOfLogTarget(target: string): string | undefined {
  return new RegExp(`/[^/_]+_[^/_]+_(${UID})/`).exec(target)?.[1];
}
