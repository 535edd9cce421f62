// SPDX-License-Identifier: Apache-2.0
// Parsing what users type: listen addresses and list flags.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { exporterOptions } from '../../src/cli';
import { UsageError } from '../../src/errors';
import { connectionLimit, podsCgroup, resolveOptions } from '../../src/options';
import { parseListen } from '../../src/server';

describe('command line parsing', function () {
  it('reads HOST:PORT, [IPV6]:PORT and :PORT', function () {
    assert.deepEqual(parseListen('0.0.0.0:19435'), { host: '0.0.0.0', port: 19435 });
    assert.deepEqual(parseListen('[::1]:80'), { host: '::1', port: 80 });
    assert.deepEqual(parseListen(':19435'), { host: '0.0.0.0', port: 19435 });
    assert.deepEqual(parseListen('localhost:0'), { host: 'localhost', port: 0 });
    for (const bad of ['19435', 'host:', 'a:b', '::1:80', 'host:65536', '[::1]']) {
      assert.throws(
        () => parseListen(bad),
        (e: Error) => e instanceof UsageError && /not an address/.test(e.message),
        bad,
      );
    }
  });

  it('takes lists repeated, comma-separated, or both', function () {
    const o = exporterOptions({
      listen: ':1',
      probes: 'connect, close',
      pid: ['1,2', '3'],
      netns: ['/a'],
      cgroup: [],
      port: ['80,443'],
      'accept-port-limit': 10,
      'enable-bpf-stats': false,
      'log-level': 'info',
      'netstack-series-ttl': 600,
      'event-ring-bytes': 4194304,
      'sidecar-comm': ['envoy', 'pilot-agent'],
      'sidecar-pid': [],
      _: [],
      $0: '',
    } as never);
    assert.deepEqual(o.probes, ['connect', 'close']);
    assert.deepEqual(o.filters, { pids: [1, 2, 3], netns: ['/a'], cgroups: [], ports: [80, 443] });
    assert.deepEqual(o.sidecars, { comms: ['envoy', 'pilot-agent'], pids: [] });
  });

  it('takes the old name of the netstack probe, and says it was renamed', function () {
    const o = resolveOptions({
      listen: { host: '127.0.0.1', port: 0 },
      probes: ['netsubsys', 'connect', 'netstack'],
      filters: { pids: [], netns: [], cgroups: [], ports: [] },
      enableBpfStats: false,
      acceptPortLimit: 16,
      netstackSeriesTtl: 5,
      tracing: { endpoint: undefined },
    });
    assert.deepEqual(o.probes, ['netstack', 'connect']);
    assert.deepEqual(o.renamed, [{ given: 'netsubsys', now: 'netstack' }]);
    assert.deepEqual(o.netstack, { seriesTtl: 5 });
    assert.deepEqual(o.tcp?.probes, ['connect']);
  });

  it("finds the pods' cgroup of either kubelet cgroup driver for --redirect-cgroup kubepods", function () {
    const mount = fs.mkdtempSync(path.join(os.tmpdir(), 'bpfnet-cgroup-'));
    try {
      assert.throws(
        () => podsCgroup(mount),
        (e: Error) =>
          e instanceof UsageError &&
          e.message.startsWith(`--redirect-cgroup kubepods: neither kubepods.slice (systemd cgroup driver) nor kubepods (cgroupfs) is under ${mount}`),
      );
      fs.mkdirSync(path.join(mount, 'kubepods'));
      assert.equal(podsCgroup(mount), path.join(mount, 'kubepods'));
      fs.mkdirSync(path.join(mount, 'kubepods.slice'));
      assert.equal(podsCgroup(mount), path.join(mount, 'kubepods.slice'));
    } finally {
      fs.rmSync(mount, { recursive: true });
    }
  });

  it('takes an HTTP connection limit up to half the open-file limit', function () {
    assert.equal(connectionLimit(128, 1024), 128);
    assert.equal(connectionLimit(512, 1024), 512);
    assert.equal(connectionLimit(1, undefined), 1);
    for (const bad of [0, 513, 1.5, NaN]) {
      assert.throws(
        () => connectionLimit(bad, 1024),
        (e: Error) =>
          e instanceof UsageError && e.message === `--http-connection-limit ${bad}: give an integer from 1 to 512 (half the open-file limit, 1024: ulimit -n)`,
        String(bad),
      );
    }
    assert.equal(
      resolveOptions({
        listen: { host: '127.0.0.1', port: 0 },
        probes: ['connect'],
        filters: { pids: [], netns: [], cgroups: [], ports: [] },
        enableBpfStats: false,
        acceptPortLimit: 16,
        netstackSeriesTtl: 5,
      }).httpConnectionLimit,
      128,
    );
  });
});
