// SPDX-License-Identifier: Apache-2.0
// What reaches the flag parser: booleans and numbers checked, BPFNET_*
// variables turned into flags, Kubernetes' service-link variables passed over.
import assert from 'node:assert/strict';
import { isServiceLink, nameOrigin, parseBoolean, prepareArgs, type FlagType } from '../../src/args';
import { UsageError } from '../../src/errors';

const FLAGS = new Map<string, FlagType>([
  ['listen', 'string'],
  ['redirect', 'boolean'],
  ['port', 'array'],
  ['netstack-series-ttl', 'number'],
]);
const KNOWN = new Set([...FLAGS.keys(), 'probes']);

const usage = (pattern: RegExp) => (e: Error) => e instanceof UsageError && pattern.test(e.message);

describe('arguments and environment', function () {
  it('takes booleans in the usual spellings and refuses the rest', function () {
    for (const t of ['1', 'true', 'TRUE', 'yes', 'on', ' Yes ']) assert.equal(parseBoolean('--x', t), true, t);
    for (const f of ['0', 'false', 'no', 'off', 'False']) assert.equal(parseBoolean('--x', f), false, f);
    for (const bad of ['', 'maybe', '2', 'y', 'enabled']) {
      assert.throws(
        () => parseBoolean('BPFNET_REDIRECT', bad),
        usage(/^BPFNET_REDIRECT ".*": not a boolean; give true or false \(1\/0, yes\/no, on\/off\)$/),
        bad,
      );
    }
  });

  it('recognises the variables Kubernetes injects for a Service, and nothing else', function () {
    // a Service bpfnet-exporter with a port named metrics, 19435/TCP
    const links: [string, string][] = [
      ['BPFNET_EXPORTER_SERVICE_HOST', '10.96.0.10'],
      ['BPFNET_EXPORTER_SERVICE_PORT', '19435'],
      ['BPFNET_EXPORTER_SERVICE_PORT_METRICS', '19435'],
      ['BPFNET_EXPORTER_PORT', 'tcp://10.96.0.10:19435'],
      ['BPFNET_EXPORTER_PORT_19435_TCP', 'tcp://10.96.0.10:19435'],
      ['BPFNET_EXPORTER_PORT_19435_TCP_PROTO', 'tcp'],
      ['BPFNET_EXPORTER_PORT_19435_TCP_PORT', '19435'],
      ['BPFNET_EXPORTER_PORT_19435_TCP_ADDR', '10.96.0.10'],
      // a Service named bpfnet: its NAME_PORT is the --port flag's variable
      ['BPFNET_PORT', 'tcp://10.96.0.11:80'],
      ['BPFNET_PORT_53_UDP', 'udp://[fd00::1]:53'],
    ];
    for (const [name, value] of links) assert.equal(isServiceLink(name, value), true, name);
    for (const [name, value] of [
      ['BPFNET_PORT', '80,443'],
      ['BPFNET_REDIRECT_PORTS', '15006'],
      ['BPFNET_LISTEN', ':19435'],
      ['BPFNET_SIDECAR_PORT', '8080'],
    ]) {
      assert.equal(isServiceLink(name!, value!), false, name);
    }
  });

  it('turns BPFNET_* variables into flags; the command line wins', function () {
    const r = prepareArgs(['run', '--listen', ':1'], { BPFNET_LISTEN: ':2', BPFNET_PORT: '80,443', BPFNET_REDIRECT: 'yes', HOME: '/root' }, FLAGS, KNOWN);
    assert.deepEqual(r.argv, ['run', '--listen', ':1', '--port=80,443', '--redirect=true']);
    assert.deepEqual(
      [...r.fromEnv],
      [
        ['port', 'BPFNET_PORT'],
        ['redirect', 'BPFNET_REDIRECT'],
      ],
    );
    // a flag of another command (check has no --probes) is left alone
    assert.deepEqual(prepareArgs(['check'], { BPFNET_PROBES: 'connect' }, new Map(), KNOWN).argv, ['check']);
    // flags from the environment go before "--"
    assert.deepEqual(prepareArgs(['--', 'x'], { BPFNET_REDIRECT: '0' }, FLAGS, KNOWN).argv, ['--redirect=false', '--', 'x']);
  });

  it('passes over service-link variables, and refuses any other unknown BPFNET_* variable', function () {
    const env = { BPFNET_EXPORTER_SERVICE_HOST: '10.96.0.10', BPFNET_EXPORTER_PORT: 'tcp://10.96.0.10:19435', BPFNET_PORT: 'tcp://10.96.0.11:80' };
    const r = prepareArgs([], env, FLAGS, KNOWN);
    assert.deepEqual(r.argv, []);
    assert.deepEqual(r.serviceLinks.sort(), Object.keys(env).sort());
    assert.throws(
      () => prepareArgs([], { BPFNET_PROBE: 'connect' }, FLAGS, KNOWN),
      usage(/^BPFNET_PROBE: not a setting of bpfnet-exporter; unset it, or see --help \(each flag --NAME is also BPFNET_NAME\)$/),
    );
    assert.throws(() => prepareArgs([], { BPFNET_listen: ':1' }, FLAGS, KNOWN), usage(/^BPFNET_listen: not a setting/));
  });

  it('refuses empty variables, and numbers and booleans that are neither', function () {
    assert.throws(() => prepareArgs([], { BPFNET_PORT: '' }, FLAGS, KNOWN), usage(/^BPFNET_PORT is empty: give a value, or unset it$/));
    assert.throws(() => prepareArgs([], { BPFNET_NETSTACK_SERIES_TTL: 'soon' }, FLAGS, KNOWN), usage(/^BPFNET_NETSTACK_SERIES_TTL "soon": not a number/));
    assert.throws(() => prepareArgs(['--netstack-series-ttl', ''], {}, FLAGS, KNOWN), usage(/^--netstack-series-ttl "": not a number/));
    assert.throws(() => prepareArgs(['--netstack-series-ttl='], {}, FLAGS, KNOWN), usage(/^--netstack-series-ttl "": not a number/));
    assert.throws(() => prepareArgs(['--netstack-series-ttl'], {}, FLAGS, KNOWN), usage(/^--netstack-series-ttl needs a value/));
    assert.throws(() => prepareArgs(['--redirect=maybe'], {}, FLAGS, KNOWN), usage(/^--redirect "maybe": not a boolean/));
    assert.deepEqual(prepareArgs(['--redirect=1', '--netstack-series-ttl', '1e3'], {}, FLAGS, KNOWN).argv, ['--redirect=true', '--netstack-series-ttl', '1e3']);
  });

  it('names the variable a bad value came from', function () {
    const from = new Map([['port', 'BPFNET_PORT']]);
    assert.equal(nameOrigin('--port 0: not a port; give 1 to 65535', from), 'BPFNET_PORT 0: not a port; give 1 to 65535');
    assert.equal(nameOrigin('--pid 0: not a process id', from), '--pid 0: not a process id');
    assert.equal(nameOrigin('--port-x 0: y', new Map([['port', 'BPFNET_PORT']])), '--port-x 0: y');
  });
});
