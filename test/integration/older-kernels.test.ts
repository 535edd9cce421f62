// SPDX-License-Identifier: Apache-2.0
// The counting tests, the socket redirect's (its backpressure included), the
// network stack probe's, workload attribution's, the spans' and the
// sidecars' tests again (real proxies' too), on Debian
// 12's LTS kernel (6.1), booted by kvm-run under emulation: CO-RE must
// relocate the programs to an older kernel's structs, and an older verifier
// must accept them.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { requireRoot } from '../helpers/privileges';

const ROOT = path.resolve(__dirname, '..', '..', '..', '..');
// the workplace's VM runner, beside the checkout
const KVM_RUN = [process.env.KVM_RUN, path.join(ROOT, '..', 'shared', 'tools', 'kvm-run'), '/work/shared/tools/kvm-run'].find(
  (p): p is string => !!p && fs.existsSync(p),
);
const FILES = ['tcp-connect', 'tcp-accept', 'tcp-close', 'histogram'].map((f) => `build/js/test/integration/${f}.test.js`);

function kvmRun(kernel: string, command: string): Promise<{ code: number | null; out: string }> {
  if (!KVM_RUN) throw new Error('kvm-run not found (../shared/tools/kvm-run); set KVM_RUN to its path');
  return new Promise((resolve) => {
    const child = spawn(KVM_RUN, ['--kernel-version', kernel, '--timeout', '900', '--', 'bash', '-c', command], { cwd: ROOT });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (out += d));
    child.on('exit', (code) => resolve({ code, out }));
  });
}

describe('older kernels', function () {
  it('counts connects, accepts and closes exactly on Linux 6.1, accepts found by fexit there', async function () {
    requireRoot();
    this.timeout(1_000_000);
    // and which accept hook the exporter chose there (fexit, where this VM has none)
    const hook = 'timeout -s TERM 60 node build/js/src/cli.js --listen 127.0.0.1:0 2>&1 | grep -m1 -o "hook=[^ ]*"';
    // Under emulation user space runs ten times slower: tests of which bucket
    // a test-made delay lands in depend on user-space reaction times and stay
    // on the host; every count, byte and attribution test runs here.
    const mocha = `npx --no-install mocha --timeout 600000 --grep 'bucket' --invert ${FILES.join(' ')}`;
    const r = await kvmRun('6.1.0-56-amd64', `cd ${ROOT} && uname -r && ${hook}; ${mocha}`);
    const summary = /^(\d+) passed, (\d+) failed$/m.exec(r.out);
    assert.ok(summary, `no test summary from the VM:\n${r.out.slice(-3000)}`);
    assert.match(r.out, /^6\.1\./m);
    assert.match(r.out, /^hook=fexit\/inet_csk_accept$/m);
    assert.equal(summary[2], '0', r.out.slice(-6000));
    assert.equal(r.code, 0);
  });

  it('redirects, pauses, stops, takes over and holds back writers of slow readers on Linux 6.1 as on this kernel', async function () {
    // (6.1 has no psock->msg_tot_len: the program walks the reader's queue)
    const files = ['sock-redirect', 'sock-redirect-lifecycle', 'sock-redirect-backpressure'].map((f) => `build/js/test/integration/${f}.test.js`);
    await testsOn61(this, `--grep 'IPv4-mapped|pauses and resumes|SIGTERM|kill -9|sidecar|never reads|memory pressure' ${files.join(' ')}`, 7);
  });

  it('follows packets through the stack, counts drops, resets and retransmissions on Linux 6.1', async function () {
    // its qdisc delay (103 ms) leaves room for an emulated sender's lateness
    await testsOn61(this, 'build/js/test/integration/netstack.test.js', 7);
  });

  it('counts connects by pod and port exactly, and folds beyond --max-series, on Linux 6.1', async function () {
    // pods as kubelet lays out their cgroups, without a runtime
    await testsOn61(this, `--grep 'folds label sets' build/js/test/integration/workload.test.js`, 1);
  });

  it('sends connection spans, counts lost events and sidecar reuse on Linux 6.1', async function () {
    // (the sidecar's delay buckets and the collector-down load test stay on
    // the host: they depend on user-space timing, which emulation stretches)
    const files = ['tracing', 'sidecar'].map((f) => `build/js/test/integration/${f}.test.js`);
    // (the exact-attributes test runs once per OTLP protocol: http/protobuf,
    // http/json, grpc)
    await testsOn61(this, `--grep 'exact attributes|no span work|samples whole|could not queue|reused' ${files.join(' ')}`, 7);
  });

  it('follows sidecars behind a REDIRECT, by what NAT tells them too, and a child or thread per connection, on Linux 6.1', async function () {
    // 6.1 traces no read that finds nothing (sock_recv_length, 6.3) nor
    // sends (tcp_sendmsg_locked, 6.2): haproxy's hand-off between threads
    // and reuse are followed on newer kernels only, unless it asks for the
    // original destination (fexit on nf_getsockopt there). The counts, not
    // the forward times (emulation stretches them)
    // (not the ones of many connections at once; with the spans of socat's
    // and the thread per connection's)
    const grep = '^(?!.*at once)(?=.*(as a sidecar behind a REDIRECT|socat with a child|connects before it reads|counts every connection unpaired))';
    await testsOn61(this, `--grep '${grep}' build/js/test/integration/sidecar-proxies.test.js`, 13, 'SIDECAR_TEST_COUNTS_ONLY=1');
  });
});

/** Runs mocha with args in a 6.1 VM; every one of its tests must pass. */
async function testsOn61(ctx: Mocha.Context, args: string, tests: number, env = ''): Promise<void> {
  requireRoot();
  ctx.timeout(1_000_000);
  const r = await kvmRun('6.1.0-56-amd64', `cd ${ROOT} && uname -r && ${env} npx --no-install mocha --timeout 600000 ${args}`);
  const summary = /^(\d+) passed, (\d+) failed$/m.exec(r.out);
  assert.ok(summary, `no test summary from the VM:\n${r.out.slice(-3000)}`);
  assert.match(r.out, /^6\.1\./m);
  assert.deepEqual([summary[1], summary[2]], [String(tests), '0'], r.out.slice(-6000));
  assert.equal(r.code, 0);
}
