// SPDX-License-Identifier: Apache-2.0
// Workload resolution without a kernel: kubelet's cgroup paths for both
// drivers, every QoS class and each runtime's scope, its container log link
// names, the addresses /proc/PID/net shows, and the resolver over a
// directory tree standing in for the cgroup2 mount (an id is a directory's
// inode number on any file system).
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { rootLogger } from '../../src/log';
import { parseCgroupPath, parseContainerLogName, podUidOfLogTarget } from '../../src/workload/kubelet-layout';
import { fibTrieAddresses, ifInet6Addresses } from '../../src/workload/pod-addresses';
import { NO_WORKLOAD, WorkloadResolver } from '../../src/workload/resolver';
import { SeriesLimit } from '../../src/metrics/series-limit';

const UID = '3a74d19b-05e4-44f4-96d7-ef0a6483fa5e';
const U_ = UID.replaceAll('-', '_');
const ID = '4b96f43e0f5b62057ab4469bb36a729c15363948ddb9fdfdd6e3af5083bbf838';

describe('kubelet layouts', function () {
  it('find the pod uid and container id in every layout of both cgroup drivers', function () {
    const layouts = [
      `kubepods.slice/kubepods-pod${U_}.slice/cri-containerd-${ID}.scope`,
      `kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod${U_}.slice/crio-${ID}.scope`,
      `kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod${U_}.slice/docker-${ID}.scope`,
      `kubepods/pod${UID}/${ID}`,
      `kubepods/burstable/pod${UID}/${ID}`,
      `kubepods/besteffort/pod${UID}/crio-${ID}`,
      // under kubelet's --cgroup-root, or a nested node (kind)
      `kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/kubelet-kubepods-besteffort-pod${U_}.slice/cri-containerd-${ID}.scope`,
      `bpfnet-t1-n1-node/kubepods/burstable/pod${UID}/${ID}`,
    ];
    for (const rel of layouts) assert.deepEqual(parseCgroupPath(rel), { podUid: UID, containerId: ID }, rel);
  });

  it("know a pod's own cgroup, a runtime's helper scope, and what is no pod", function () {
    assert.deepEqual(parseCgroupPath(`kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod${U_}.slice`), { podUid: UID, containerId: '' });
    assert.deepEqual(parseCgroupPath(`kubepods/pod${UID}`), { podUid: UID, containerId: '' });
    // cri-o's conmon runs beside the container, in a scope of its own
    assert.deepEqual(parseCgroupPath(`kubepods.slice/kubepods-pod${U_}.slice/crio-conmon-${ID}.scope`), { podUid: UID, containerId: '' });
    for (const rel of ['/', 'system.slice/nginx.service', `user.slice/pod${UID}`, `pod${UID}/${ID}`, `kubepods/other/pod${UID}/${ID}`, 'kubepods.slice']) {
      assert.equal(parseCgroupPath(rel), undefined, rel);
    }
  });

  it("read kubelet's log link names, container names with dashes included", function () {
    assert.deepEqual(parseContainerLogName(`cart-7d9f-x2x_shop_istio-proxy-${ID}.log`), {
      pod: 'cart-7d9f-x2x',
      namespace: 'shop',
      container: 'istio-proxy',
      containerId: ID,
    });
    for (const name of ['cart_shop_app.log', `cart_shop_app-${ID.slice(1)}.log`, `cart-shop-app-${ID}.log`, `cart_shop_app-${ID}.txt`]) {
      assert.equal(parseContainerLogName(name), undefined, name);
    }
    assert.equal(podUidOfLogTarget(`/var/log/pods/shop_cart-7d9f-x2x_${UID}/app/0.log`), UID);
    assert.equal(podUidOfLogTarget('/var/log/elsewhere/0.log'), undefined);
  });

  it("read a network namespace's own addresses, loopback and link-local left out", function () {
    const trie = [
      'Main:',
      '  +-- 0.0.0.0/0 3 0 5',
      '     |-- 10.77.1.0',
      '        /24 link UNICAST',
      '     |-- 10.77.1.2',
      '        /32 host LOCAL',
      'Local:',
      '  +-- 127.0.0.0/8 2 0 2',
      '     |-- 127.0.0.1',
      '        /32 host LOCAL',
      '     |-- 10.77.1.2',
      '        /32 host LOCAL',
    ].join('\n');
    assert.deepEqual(fibTrieAddresses(trie), ['10.77.1.2']);
    const inet6 = [
      'fe8000000000000000fc00fffe000001 04 40 20 80     eth0',
      'fd000000000000000000000000000002 04 40 00 82     eth0',
      '00000000000000000000000000000001 01 80 10 80       lo',
    ].join('\n');
    assert.deepEqual(ifInet6Addresses(inet6), ['fd000000000000000000000000000002']);
  });
});

describe('workload resolver', function () {
  let root: string;
  let links: string;
  let now = 0;
  const ino = (rel: string) => fs.statSync(path.join(root, 'cgroup', rel), { bigint: true }).ino;
  const mk = (rel: string) => fs.mkdirSync(path.join(root, 'cgroup', rel), { recursive: true });
  const link = (pod: string, ns: string, container: string, id: string, uid = UID) =>
    fs.symlinkSync(`/var/log/pods/${ns}_${pod}_${uid}/${container}/0.log`, path.join(links, `${pod}_${ns}_${container}-${id}.log`));
  let resolver: WorkloadResolver;

  beforeEach(function () {
    root = fs.mkdtempSync(path.join(os.tmpdir(), 'bpfnet-resolver-'));
    links = path.join(root, 'containers');
    fs.mkdirSync(links);
    mk('system.slice/nginx.service');
    now = 1_000_000;
    resolver = new WorkloadResolver({ cgroupMount: path.join(root, 'cgroup'), containersDir: links, log: rootLogger, now: () => now });
    resolver.start();
  });

  afterEach(function () {
    resolver.close();
    fs.rmSync(root, { recursive: true, force: true });
  });

  it('names a container that appears after the start at its first lookup, and a host cgroup by its path', function () {
    const rel = `kubepods/burstable/pod${UID}/${ID}`;
    mk(rel);
    link('cart', 'shop', 'app', ID);
    assert.deepEqual(resolver.workload(ino(rel)), { namespace: 'shop', pod: 'cart', container: 'app', containerId: ID, podUid: UID, cgroup: '' });
    assert.deepEqual(resolver.workload(ino('system.slice/nginx.service')), { ...NO_WORKLOAD, cgroup: 'system.slice/nginx.service' });
    assert.deepEqual(resolver.workload(ino('')), { ...NO_WORKLOAD, cgroup: '/' });
    assert.equal(resolver.workload(123456789n), NO_WORKLOAD);
  });

  it("names a pod's container by its pod when it has no link of its own, and gives the path while the pod is unknown", function () {
    const pause = `kubepods/pod${UID}/${'b'.repeat(64)}`;
    mk(pause);
    assert.deepEqual(resolver.workload(ino(pause)), { ...NO_WORKLOAD, containerId: 'b'.repeat(64), podUid: UID, cgroup: pause });
    link('cart', 'shop', 'app', ID);
    now += 1000;
    assert.deepEqual(resolver.workload(ino(pause)), { namespace: 'shop', pod: 'cart', container: '', containerId: 'b'.repeat(64), podUid: UID, cgroup: '' });
  });

  it('keeps the names of a deleted container, and says since when it is gone', function () {
    const rel = `kubepods/besteffort/pod${UID}/${ID}`;
    mk(rel);
    link('job', 'batch', 'run', ID);
    const id = ino(rel);
    assert.equal(resolver.workload(id).pod, 'job');
    fs.rmSync(path.join(links, `job_batch_run-${ID}.log`));
    fs.rmdirSync(path.join(root, 'cgroup', rel));
    now += 5000;
    assert.equal(resolver.goneSince(id), undefined, 'not noticed before a scan');
    // a miss makes it scan
    resolver.workload(424242n);
    assert.equal(resolver.goneSince(id), now);
    assert.equal(resolver.workload(id).pod, 'job');
  });

  it('names a cgroup no scan saw from the names the kernel kept, and counts it gone', function () {
    const kept = new WorkloadResolver({
      cgroupMount: path.join(root, 'cgroup'),
      containersDir: links,
      log: rootLogger,
      now: () => now,
      kernelNames: (id) => (id === 77n ? { level: 4, names: [ID, `pod${UID}`, 'besteffort', 'kubepods', ''] } : undefined),
    });
    link('job', 'batch', 'run', ID);
    kept.start();
    try {
      assert.deepEqual(kept.workload(77n), { namespace: 'batch', pod: 'job', container: 'run', containerId: ID, podUid: UID, cgroup: '' });
      assert.equal(kept.goneSince(77n), now);
    } finally {
      kept.close();
    }
  });
});

describe('series limit', function () {
  const sample = (pod: string, value: number) => ({ key: pod, labels: { family: 'ipv4', pod }, value });
  const other = (s: { labels: { pod: string } }) => ({ key: 'other', labels: { ...s.labels, pod: 'other' }, value: 0 });
  const merge = (into: { value: number }, from: { value: number }) => (into.value += from.value);
  const sorted = <T extends { labels: { pod: string } }>(xs: T[]) => [...xs].sort((a, b) => a.labels.pod.localeCompare(b.labels.pod));
  const empty = (s: { value: number }) => s.value === 0;

  it('keeps the first label sets, folds the rest into "other" exactly, and counts each folded set once', function () {
    const folds: string[] = [];
    const limit = new SeriesLimit(2, ['pod'], (m) => folds.push(m));
    const out = limit.apply('m', [sample('a', 1), sample('b', 2), sample('c', 3), sample('d', 4)], other, merge, empty);
    assert.deepEqual(out, [sample('a', 1), sample('b', 2), sample('other', 7)]);
    assert.deepEqual(limit.foldedCounts(), [{ metric: 'm', count: 2 }]);
    // the same sets again: the same places, nothing counted twice
    const again = limit.apply('m', [sample('c', 4), sample('a', 2), sample('b', 2), sample('d', 4)], other, merge, empty);
    assert.deepEqual(sorted(again), [sample('a', 2), sample('b', 2), sample('other', 8)]);
    assert.deepEqual(limit.foldedCounts(), [{ metric: 'm', count: 2 }]);
    assert.deepEqual(folds, ['m'], 'told once per family');
  });

  it('frees the place of a set no longer seen, keeps a folded set folded, and hides an empty "other"', function () {
    const limit = new SeriesLimit(1, ['pod']);
    limit.apply('m', [sample('a', 1), sample('b', 1)], other, merge, empty);
    // a is gone: its place goes to a new set, b stays folded
    assert.deepEqual(sorted(limit.apply('m', [sample('b', 1), sample('c', 1)], other, merge, empty)), [sample('c', 1), sample('other', 1)]);
    // the kernel's own "other" entry, counting nothing yet, is not shown
    assert.deepEqual(limit.apply('n', [sample('other', 0), sample('x', 1)], other, merge, empty), [sample('x', 1)]);
  });
});
