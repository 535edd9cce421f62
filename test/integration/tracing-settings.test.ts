// SPDX-License-Identifier: Apache-2.0
// Span settings as users get them wrong: each bad --otlp-endpoint or OTEL_*
// value is refused by the real command line with exactly one line naming it
// and the fix, exit status 2, before anything loads; credentials in a bad
// value are never repeated.
import assert from 'node:assert/strict';
import { runCli } from '../helpers/exporter';
import { requireRoot } from '../helpers/privileges';

const ENDPOINT = ['--otlp-endpoint', 'http://127.0.0.1:4318'];

const CASES: [string, string[], NodeJS.ProcessEnv, RegExp][] = [
  [
    'a negative queue size',
    ENDPOINT,
    { OTEL_BSP_MAX_QUEUE_SIZE: '-1' },
    /^OTEL_BSP_MAX_QUEUE_SIZE -1: not a whole number from 1 to \d+; give a number of spans/,
  ],
  ['a queue of no spans', ENDPOINT, { OTEL_BSP_MAX_QUEUE_SIZE: '0' }, /^OTEL_BSP_MAX_QUEUE_SIZE 0: not a whole number from 1/],
  ['a batch size that is not a number', ENDPOINT, { OTEL_BSP_MAX_EXPORT_BATCH_SIZE: 'lots' }, /^OTEL_BSP_MAX_EXPORT_BATCH_SIZE lots: not a whole number/],
  [
    'a batch larger than the queue',
    ENDPOINT,
    { OTEL_BSP_MAX_QUEUE_SIZE: '100', OTEL_BSP_MAX_EXPORT_BATCH_SIZE: '200' },
    /^OTEL_BSP_MAX_EXPORT_BATCH_SIZE 200: more than OTEL_BSP_MAX_QUEUE_SIZE 100; give a batch size up to the queue size/,
  ],
  [
    'a fractional schedule delay',
    ENDPOINT,
    { OTEL_BSP_SCHEDULE_DELAY: '1.5' },
    /^OTEL_BSP_SCHEDULE_DELAY 1\.5: not a whole number from 0 .*; give milliseconds/,
  ],
  ['a negative export timeout', ENDPOINT, { OTEL_BSP_EXPORT_TIMEOUT: '-5' }, /^OTEL_BSP_EXPORT_TIMEOUT -5: not a whole number/],
  [
    'a timeout with a unit',
    ENDPOINT,
    { OTEL_EXPORTER_OTLP_TIMEOUT: '10s' },
    /^OTEL_EXPORTER_OTLP_TIMEOUT 10s: not a whole number from 1 .*; give milliseconds, such as 10000/,
  ],
  ['a traces timeout of 0', ENDPOINT, { OTEL_EXPORTER_OTLP_TRACES_TIMEOUT: '0' }, /^OTEL_EXPORTER_OTLP_TRACES_TIMEOUT 0: not a whole number from 1/],
  [
    'a header written as HTTP',
    ENDPOINT,
    { OTEL_EXPORTER_OTLP_HEADERS: 'Authorization: Bearer s3cr3t' },
    /^OTEL_EXPORTER_OTLP_HEADERS: entry 1 has no '='; give comma-separated key=value entries/,
  ],
  [
    'a header with broken percent-encoding',
    ENDPOINT,
    { OTEL_EXPORTER_OTLP_HEADERS: 'a=1,x-key=s3cr3t%zz' },
    /^OTEL_EXPORTER_OTLP_HEADERS: entry 2 has a '%' that is not followed by two hex digits/,
  ],
  ['a header without a value', ENDPOINT, { OTEL_EXPORTER_OTLP_TRACES_HEADERS: 'x-key=' }, /^OTEL_EXPORTER_OTLP_TRACES_HEADERS: header x-key has no value/],
  [
    'a header name with a space',
    ENDPOINT,
    { OTEL_EXPORTER_OTLP_HEADERS: 'x%20key=s3cr3t' },
    /^OTEL_EXPORTER_OTLP_HEADERS: entry 1 \("x key"\) is not an HTTP header name/,
  ],
  ['a resource attribute without a value', ENDPOINT, { OTEL_RESOURCE_ATTRIBUTES: 'team' }, /^OTEL_RESOURCE_ATTRIBUTES: entry "team" has no '='/],
  ['a resource attribute with two =', ENDPOINT, { OTEL_RESOURCE_ATTRIBUTES: 'a=b=c' }, /^OTEL_RESOURCE_ATTRIBUTES: entry "a=b=c" has more than one '='/],
  ['an unknown sampler', ENDPOINT, { OTEL_TRACES_SAMPLER: 'bogus' }, /^OTEL_TRACES_SAMPLER bogus: not a sampler; give always_on, always_off, traceidratio/],
  [
    'a known sampler it cannot run',
    ENDPOINT,
    { OTEL_TRACES_SAMPLER: 'parentbased_jaeger_remote' },
    /^OTEL_TRACES_SAMPLER parentbased_jaeger_remote: not supported by bpfnet-exporter/,
  ],
  [
    'a sampler ratio above 1',
    ENDPOINT,
    { OTEL_TRACES_SAMPLER: 'traceidratio', OTEL_TRACES_SAMPLER_ARG: '2' },
    /^OTEL_TRACES_SAMPLER_ARG 2: give the share of traces to keep, a number from 0 to 1/,
  ],
  ['a boolean that is not one', ENDPOINT, { OTEL_SDK_DISABLED: 'yes' }, /^OTEL_SDK_DISABLED yes: give true or false/],
  [
    'spans asked for and turned off',
    ENDPOINT,
    { OTEL_SDK_DISABLED: 'true' },
    /^--otlp-endpoint asks for spans and OTEL_SDK_DISABLED=true turns them off; give one or the other/,
  ],
  ['an exporter it does not have', ENDPOINT, { OTEL_TRACES_EXPORTER: 'zipkin' }, /^OTEL_TRACES_EXPORTER zipkin: bpfnet-exporter sends spans over OTLP only/],
  ['a compression it does not have', ENDPOINT, { OTEL_EXPORTER_OTLP_COMPRESSION: 'br' }, /^OTEL_EXPORTER_OTLP_COMPRESSION br: give gzip or none/],
  [
    'user and password in the endpoint',
    ['--otlp-endpoint', 'http://user:s3cr3t@127.0.0.1:4318'],
    {},
    /^--otlp-endpoint http:\/\/\*\*\*@127\.0\.0\.1:4318\/: user and password in the URL are not sent; .*OTEL_EXPORTER_OTLP_HEADERS=Authorization=Basic%20/,
  ],
  [
    'a fragment in the endpoint',
    ['--otlp-endpoint', 'http://127.0.0.1:4318/#x'],
    {},
    /^--otlp-endpoint http:\/\/127\.0\.0\.1:4318\/#x: a #fragment is never sent; remove it/,
  ],
  [
    'an environment endpoint that is not a URL',
    [],
    { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:99999' },
    /^OTEL_EXPORTER_OTLP_ENDPOINT http:\/\/collector:99999: not a URL/,
  ],
  [
    'a traces endpoint that is not http',
    [],
    { OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'ftp://collector/v1/traces' },
    /^OTEL_EXPORTER_OTLP_TRACES_ENDPOINT ftp:\/\/collector\/v1\/traces: not http or https/,
  ],
];

describe('span settings', function () {
  before(function () {
    requireRoot();
  });

  it('refuses each bad value with one line naming it and the fix, and exit status 2, before anything loads', async function () {
    this.timeout(CASES.length * 10_000);
    for (const [what, args, env, message] of CASES) {
      const r = await runCli(['--listen', '127.0.0.1:0', ...args], { env });
      assert.equal(r.code, 2, `${what}: exit status ${r.code}; stderr:\n${r.stderr}`);
      assert.match(r.stderr, /^bpfnet-exporter: [^\n]+\n$/, `${what}: one line, nothing else:\n${r.stderr}`);
      assert.match(r.stderr.slice('bpfnet-exporter: '.length), message, what);
      assert.doesNotMatch(r.stderr, /s3cr3t/, `${what}: a credential was repeated`);
    }
  });
});
