// SPDX-License-Identifier: Apache-2.0
// Span settings from --otlp-endpoint, --trace-sample-ratio and OTEL_*: what
// the specification allows is read as it says (empty is unset, names of
// values are not case-sensitive, headers may carry base64 padding), what
// would be ignored or misread is refused, and nothing is read without an
// endpoint.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { UsageError } from '../../../src/errors';
import { resolveTracing, shownUrl } from '../../../src/tracing/config';
import { QUEUE_DEFAULTS, queueSettingsFromEnv } from '../../../src/tracing/export-queue';
import { envBoolean, parseKeyValueList, parseRatio, samplerRatio } from '../../../src/tracing/otel-env';

const BASE = { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318' };
const refuses = (fn: () => unknown, message: RegExp) =>
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof UsageError, String(err));
    assert.match(err.message, message);
    return true;
  });

describe('span settings', function () {
  it('reads nothing without an endpoint, bad values included', function () {
    assert.equal(resolveTracing({}, { OTEL_BSP_MAX_QUEUE_SIZE: '-1', OTEL_TRACES_SAMPLER: 'bogus' }), undefined);
    assert.equal(resolveTracing({ sampleRatio: 0.5 }, {}), undefined);
  });

  it('builds the traces URL from the flag or either variable, keeping a query', function () {
    const url = (spec: object, env: NodeJS.ProcessEnv) => resolveTracing(spec, env)!.url;
    assert.equal(url({ endpoint: 'http://c:4318' }, {}), 'http://c:4318/v1/traces');
    assert.equal(url({ endpoint: 'https://c/otlp/?tenant=a' }, {}), 'https://c/otlp/v1/traces?tenant=a');
    assert.equal(url({}, { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318/base' }), 'http://c:4318/base/v1/traces');
    assert.equal(url({}, { ...BASE, OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'http://t:1/custom' }), 'http://t:1/custom');
    assert.equal(url({ endpoint: 'http://flag:1' }, { OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'http://t:1/x' }), 'http://flag:1/v1/traces');
    // empty is unset
    assert.equal(url({}, { OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: '', ...BASE }), 'http://collector:4318/v1/traces');
    assert.equal(shownUrl('https://c/v1/traces?key=s3cr3t&t=1'), 'https://c/v1/traces?key=***&t=***');
  });

  it('refuses credentials and fragments in an endpoint without repeating the password', function () {
    refuses(
      () => resolveTracing({ endpoint: 'http://u:s3cr3t@c:4318' }, {}),
      /^--otlp-endpoint http:\/\/\*\*\*@c:4318\/: user and password in the URL are not sent/,
    );
    refuses(
      () => resolveTracing({}, { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://u@c:4318' }),
      /^OTEL_EXPORTER_OTLP_ENDPOINT http:\/\/\*\*\*@c:4318\/: user and password/,
    );
    refuses(() => resolveTracing({ endpoint: 'http://c:4318#x' }, {}), /a #fragment is never sent/);
  });

  it('refuses a sample ratio that is not one, NaN included', function () {
    refuses(() => resolveTracing({ endpoint: 'http://c:1', sampleRatio: NaN }, {}), /^--trace-sample-ratio \(not a number\): give a ratio from 0 to 1/);
    refuses(() => resolveTracing({ endpoint: 'http://c:1', sampleRatio: -0.1 }, {}), /^--trace-sample-ratio -0.1:/);
  });

  it('turns spans off by OTEL_SDK_DISABLED or OTEL_TRACES_EXPORTER=none, and refuses that together with the flag', function () {
    assert.equal(resolveTracing({}, { ...BASE, OTEL_SDK_DISABLED: 'TRUE' }), undefined);
    assert.equal(resolveTracing({}, { ...BASE, OTEL_TRACES_EXPORTER: 'none' }), undefined);
    assert.ok(resolveTracing({}, { ...BASE, OTEL_SDK_DISABLED: 'false', OTEL_TRACES_EXPORTER: 'otlp' }));
    refuses(() => resolveTracing({ endpoint: 'http://c:1' }, { OTEL_TRACES_EXPORTER: 'none' }), /OTEL_TRACES_EXPORTER=none turns them off/);
    refuses(() => envBoolean({ X: '1' }, 'X'), /^X 1: give true or false/);
  });

  it('takes the sampler from OTEL_TRACES_SAMPLER(_ARG) unless the flag gives a ratio', function () {
    assert.equal(samplerRatio({}), 1);
    assert.equal(samplerRatio({ OTEL_TRACES_SAMPLER: 'ALWAYS_OFF' }), 0);
    assert.equal(samplerRatio({ OTEL_TRACES_SAMPLER: 'parentbased_traceidratio', OTEL_TRACES_SAMPLER_ARG: '0.25' }), 0.25);
    assert.equal(samplerRatio({ OTEL_TRACES_SAMPLER: 'traceidratio' }), 1);
    // the argument of a sampler that takes none is ignored, as specified
    assert.equal(samplerRatio({ OTEL_TRACES_SAMPLER: 'always_on', OTEL_TRACES_SAMPLER_ARG: 'x' }), 1);
    assert.equal(resolveTracing({ endpoint: 'http://c:1', sampleRatio: 0.5 }, { OTEL_TRACES_SAMPLER: 'bogus' })!.ratio, 0.5);
    refuses(() => samplerRatio({ OTEL_TRACES_SAMPLER: 'xray' }), /not supported by bpfnet-exporter/);
    for (const bad of ['1.5', '-0', 'NaN', '0x1', '1/2', 'Infinity'])
      refuses(() => samplerRatio({ OTEL_TRACES_SAMPLER: 'traceidratio', OTEL_TRACES_SAMPLER_ARG: bad }), /^OTEL_TRACES_SAMPLER_ARG/);
    assert.deepEqual(['0', '1', '.5', '0.', '5e-1'].map(parseRatio), [0, 1, 0.5, 0, 0.5]);
  });

  it('reads the queue settings over its defaults, and refuses what the specification does not allow', function () {
    assert.deepEqual(queueSettingsFromEnv({}), QUEUE_DEFAULTS);
    assert.deepEqual(queueSettingsFromEnv({ OTEL_BSP_MAX_QUEUE_SIZE: '100', OTEL_BSP_SCHEDULE_DELAY: '0', OTEL_BSP_EXPORT_TIMEOUT: ' 0 ' }), {
      ...QUEUE_DEFAULTS,
      maxQueueSize: 100,
      maxExportBatchSize: 100,
      scheduledDelayMillis: 0,
      exportTimeoutMillis: 0,
    });
    refuses(() => queueSettingsFromEnv({ OTEL_BSP_MAX_QUEUE_SIZE: '-1' }), /^OTEL_BSP_MAX_QUEUE_SIZE -1: not a whole number from 1/);
    refuses(() => queueSettingsFromEnv({ OTEL_BSP_MAX_QUEUE_SIZE: '2147483648' }), /not a whole number from 1 to 2147483647/);
    refuses(() => queueSettingsFromEnv({ OTEL_BSP_MAX_EXPORT_BATCH_SIZE: '9000' }), /^OTEL_BSP_MAX_EXPORT_BATCH_SIZE 9000: more than the queue's 8192 spans/);
    refuses(() => queueSettingsFromEnv({ OTEL_BSP_SCHEDULE_DELAY: '1e3' }), /^OTEL_BSP_SCHEDULE_DELAY 1e3/);
  });

  it('reads the OTLP settings: timeout (the traces one first), compression, protocol', function () {
    const c = resolveTracing(
      {},
      {
        ...BASE,
        OTEL_EXPORTER_OTLP_TIMEOUT: '2000',
        OTEL_EXPORTER_OTLP_TRACES_TIMEOUT: '3000',
        OTEL_EXPORTER_OTLP_COMPRESSION: 'GZIP',
        OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json',
      },
    )!;
    assert.deepEqual([c.timeoutMillis, c.compression, c.protocol], [3000, 'gzip', 'http/json']);
    assert.equal(resolveTracing({}, BASE)!.timeoutMillis, 10_000);
    refuses(() => resolveTracing({}, { ...BASE, OTEL_EXPORTER_OTLP_TIMEOUT: '10s' }), /^OTEL_EXPORTER_OTLP_TIMEOUT 10s/);
    refuses(
      () => resolveTracing({}, { ...BASE, OTEL_EXPORTER_OTLP_PROTOCOL: 'http/thrift' }),
      /^OTEL_EXPORTER_OTLP_PROTOCOL http\/thrift: not supported; give http\/protobuf \(the default\), http\/json or grpc$/,
    );
  });

  describe('over gRPC', function () {
    const GRPC = { OTEL_EXPORTER_OTLP_PROTOCOL: 'grpc' };
    let dir: string;
    before(() => (dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bpfnet-grpc-tls-'))));
    after(() => fs.rmSync(dir, { recursive: true, force: true }));

    it('uses the endpoint as is, scheme and host:port, with no /v1/traces; without a scheme, TLS unless OTEL_EXPORTER_OTLP_INSECURE=true', function () {
      const url = (spec: object, env: NodeJS.ProcessEnv) => resolveTracing(spec, { ...GRPC, ...env })!.url;
      assert.equal(url({ endpoint: 'http://c:4317' }, {}), 'http://c:4317');
      assert.equal(url({ endpoint: 'http://c:4317/' }, {}), 'http://c:4317');
      assert.equal(url({}, { OTEL_EXPORTER_OTLP_ENDPOINT: 'https://c' }), 'https://c');
      assert.equal(url({}, { OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'http://t:4317' }), 'http://t:4317');
      assert.equal(url({}, { OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'c:4317' }), 'https://c:4317');
      assert.equal(url({}, { OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'c:4317', OTEL_EXPORTER_OTLP_INSECURE: 'TRUE' }), 'http://c:4317');
      assert.equal(
        url({}, { OTEL_EXPORTER_OTLP_ENDPOINT: 'c:4317', OTEL_EXPORTER_OTLP_INSECURE: 'true', OTEL_EXPORTER_OTLP_TRACES_INSECURE: 'false' }),
        'https://c:4317',
      );
      // consistent with the scheme: nothing to refuse
      assert.equal(url({ endpoint: 'http://c:4317' }, { OTEL_EXPORTER_OTLP_INSECURE: 'true' }), 'http://c:4317');
      assert.equal(resolveTracing({ endpoint: 'http://c:4317' }, GRPC)!.protocol, 'grpc');
    });

    it('refuses a path, a query, an INSECURE that contradicts the scheme, and a bad INSECURE', function () {
      refuses(
        () => resolveTracing({}, { ...GRPC, OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'http://c:4317/v1/traces' }),
        /^OTEL_EXPORTER_OTLP_TRACES_ENDPOINT http:\/\/c:4317\/v1\/traces: a gRPC endpoint has no path or query \(the service's path is fixed\); give scheme:\/\/host:port, such as http:\/\/localhost:4317$/,
      );
      refuses(() => resolveTracing({ endpoint: 'http://c:4317?x=1' }, GRPC), /^--otlp-endpoint http:\/\/c:4317\?x=1: a gRPC endpoint has no path or query/);
      refuses(
        () => resolveTracing({ endpoint: 'https://c:4317' }, { ...GRPC, OTEL_EXPORTER_OTLP_INSECURE: 'true' }),
        /^OTEL_EXPORTER_OTLP_INSECURE=true contradicts --otlp-endpoint https:\/\/c:4317: INSECURE applies to an endpoint without a scheme; give the endpoint as host:port, or unset OTEL_EXPORTER_OTLP_INSECURE$/,
      );
      refuses(
        () => resolveTracing({ endpoint: 'c:4317' }, { ...GRPC, OTEL_EXPORTER_OTLP_INSECURE: 'yes' }),
        /^OTEL_EXPORTER_OTLP_INSECURE yes: give true or false$/,
      );
      refuses(
        () => resolveTracing({ endpoint: 'ftp://c:4317' }, GRPC),
        /not http or https; give the collector's OTLP\/gRPC address, such as http:\/\/localhost:4317$/,
      );
    });

    it('checks the TLS files the SDK would read: readable PEM, a client key with its certificate, and only with TLS', function () {
      const pem = path.join(dir, 'ca.pem');
      execFileSync(
        'openssl',
        ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=bpfnet-test', '-days', '1', '-keyout', path.join(dir, 'key.pem'), '-out', pem],
        {
          stdio: 'ignore',
        },
      );
      const key = path.join(dir, 'key.pem');
      const tls = { OTEL_EXPORTER_OTLP_ENDPOINT: 'https://c:4317' };
      assert.equal(resolveTracing({}, { ...GRPC, ...tls, OTEL_EXPORTER_OTLP_CERTIFICATE: pem })!.url, 'https://c:4317');
      assert.ok(resolveTracing({}, { ...GRPC, ...tls, OTEL_EXPORTER_OTLP_CLIENT_KEY: key, OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE: pem }));
      refuses(
        () => resolveTracing({}, { ...GRPC, ...tls, OTEL_EXPORTER_OTLP_CERTIFICATE: path.join(dir, 'none.pem') }),
        /^OTEL_EXPORTER_OTLP_CERTIFICATE \S+none.pem: cannot read it \(ENOENT\); give a PEM file the exporter can read$/,
      );
      refuses(
        () => resolveTracing({}, { ...GRPC, ...tls, OTEL_EXPORTER_OTLP_CLIENT_KEY: key }),
        /^OTEL_EXPORTER_OTLP_CLIENT_KEY is set and OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE is not: a client certificate and its key go together; give both, or neither$/,
      );
      fs.writeFileSync(path.join(dir, 'junk.pem'), 'not a certificate\n');
      refuses(
        () => resolveTracing({}, { ...GRPC, ...tls, OTEL_EXPORTER_OTLP_CLIENT_KEY: path.join(dir, 'junk.pem'), OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE: pem }),
        /^OTEL_EXPORTER_OTLP_CLIENT_KEY, OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE: not usable for TLS \(.+\); give PEM files, the key matching the certificate$/,
      );
      refuses(
        () => resolveTracing({ endpoint: 'http://c:4317' }, { ...GRPC, OTEL_EXPORTER_OTLP_CERTIFICATE: pem }),
        /^OTEL_EXPORTER_OTLP_CERTIFICATE: TLS files apply to an https endpoint, and the endpoint is http \(no TLS\); give an https:\/\/ endpoint, or unset it$/,
      );
    });
  });

  it('parses headers as the SDK sends them, and refuses what it would skip, never showing a value', function () {
    assert.deepEqual(parseKeyValueList('H', 'Authorization=Basic%20dXNlcjpwYXNz==, x-tenant = a%2Cb ,,', 'headers'), [
      ['Authorization', 'Basic dXNlcjpwYXNz=='],
      ['x-tenant', 'a,b'],
    ]);
    for (const [raw, message] of [
      ['Authorization: s3cr3t', /^H: entry 1 has no '='/],
      ['a=1;p=s3cr3t', /^H: entry 1 has a ';'/],
      ['a=%E0%A4%As3cr3t', /^H: entry 1 has a '%'/],
      ['=s3cr3t', /^H: entry 1 has no key/],
      ['a b=s3cr3t', /^H: entry 1 \("a b"\) is not an HTTP header name/],
      ['a=', /^H: header a has no value/],
      ['a=s3cr3t%0A', /^H: header a has a control character/],
    ] as const) {
      assert.throws(
        () => parseKeyValueList('H', raw, 'headers'),
        (err: Error) => message.test(err.message) && !err.message.includes('s3cr3t'),
        raw,
      );
    }
  });

  it('parses resource attributes as the SDK does, and refuses what would make it drop them all', function () {
    assert.deepEqual(parseKeyValueList('R', 'k8s.node.name=n1,empty=,team=net%20ops', 'attributes'), [
      ['k8s.node.name', 'n1'],
      ['empty', ''],
      ['team', 'net ops'],
    ]);
    refuses(() => parseKeyValueList('R', 'a=b=c', 'attributes'), /^R: entry "a=b=c" has more than one '='/);
    refuses(() => parseKeyValueList('R', 'a', 'attributes'), /has no '='/);
    refuses(() => parseKeyValueList('R', `a=${'x'.repeat(256)}`, 'attributes'), /longer than 255 characters/);
    refuses(() => resolveTracing({}, { ...BASE, OTEL_RESOURCE_ATTRIBUTES: 'a=%zz' }), /^OTEL_RESOURCE_ATTRIBUTES: entry "a=%zz" has a '%'/);
  });
});
