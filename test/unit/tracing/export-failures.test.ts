// SPDX-License-Identifier: Apache-2.0
// Export failures in words: each error the OTLP exporter reports gets its
// kind (refused, dns, timeout, http with the status, tls...), and the log of
// them is the first at once, then one summary per interval, then the
// recovery once.
import assert from 'node:assert/strict';
import { Metadata } from '@grpc/grpc-js';
import { classifyFailure, FailureLog, type Timers } from '../../../src/tracing/export-failures';
import { Logger } from '../../../src/log';

const withCode = (message: string, code: string | number) => Object.assign(new Error(message), { code });

describe('export failures', function () {
  it('names the reason of each error the OTLP exporter reports', function () {
    const cases: [unknown, string, string][] = [
      [withCode('connect ECONNREFUSED 10.0.0.1:4318', 'ECONNREFUSED'), 'refused', 'connect ECONNREFUSED 10.0.0.1:4318'],
      [withCode('getaddrinfo ENOTFOUND collector', 'ENOTFOUND'), 'dns', 'getaddrinfo ENOTFOUND collector'],
      [withCode('getaddrinfo EAI_AGAIN collector', 'EAI_AGAIN'), 'dns', 'getaddrinfo EAI_AGAIN collector'],
      [new Error('Request timed out'), 'timeout', 'Request timed out'],
      [withCode('socket hang up', 'ECONNRESET'), 'reset', 'socket hang up'],
      [withCode('Internal Server Error', 500), 'http', 'HTTP 500 Internal Server Error'],
      [withCode('self-signed certificate', 'DEPTH_ZERO_SELF_SIGNED_CERT'), 'tls', 'self-signed certificate (DEPTH_ZERO_SELF_SIGNED_CERT)'],
      [
        withCode("Hostname/IP does not match certificate's altnames", 'ERR_TLS_CERT_ALTNAME_INVALID'),
        'tls',
        "Hostname/IP does not match certificate's altnames (ERR_TLS_CERT_ALTNAME_INVALID)",
      ],
      [withCode('wrong version number', 'EPROTO'), 'tls', 'wrong version number (EPROTO)'],
      [new Error('something else'), 'error', 'something else'],
    ];
    for (const [err, kind, detail] of cases) assert.deepEqual(classifyFailure(err), { kind, detail });
  });

  it('names gRPC failures by their status, and a missing connection by what the transport said', function () {
    // as @grpc/grpc-js reports a call's status (ServiceError)
    const grpc = (code: number, details: string) => Object.assign(new Error(`${code} ${details}`), { code, details, metadata: new Metadata() });
    const cases: [unknown, string, string][] = [
      [grpc(14, 'fault: UNAVAILABLE'), 'grpc', 'gRPC UNAVAILABLE: fault: UNAVAILABLE'],
      [
        grpc(14, 'No connection established. Last error: Error: connect ECONNREFUSED 127.0.0.1:4317'),
        'refused',
        'gRPC UNAVAILABLE: No connection established. Last error: Error: connect ECONNREFUSED 127.0.0.1:4317',
      ],
      [grpc(4, 'Deadline exceeded after 0.3s'), 'timeout', 'gRPC DEADLINE_EXCEEDED: Deadline exceeded after 0.3s'],
      [grpc(16, ''), 'grpc', 'gRPC UNAUTHENTICATED'],
      [grpc(99, 'x'), 'grpc', 'gRPC 99: x'],
    ];
    for (const [err, kind, detail] of cases) assert.deepEqual(classifyFailure(err), { kind, detail });
  });

  it('gives a retried status its code from the last answer, since the SDK reports it without', function () {
    const err = new Error('Export failed with retryable status');
    assert.deepEqual(classifyFailure(err, { status: 429, statusText: 'Too Many Requests', retryAfter: '30' }), {
      kind: 'http',
      detail: 'HTTP 429 Too Many Requests (Retry-After: 30)',
    });
    assert.equal(classifyFailure(err).kind, 'http');
  });

  it('logs the first failure at once, the rest as one summary per interval, and the recovery once', function () {
    const lines: string[] = [];
    const log = new Logger('info', 'tracing', (l) => lines.push(l.replace(/^ts=\S+ /, '')));
    let fire: (() => void) | undefined;
    const timers: Timers = {
      setTimeout: (fn) => (fire = fn),
      clearTimeout: () => (fire = undefined),
    };
    const f = new FailureLog(log, 'http://c/v1/traces', 60_000, timers);
    const refused = { kind: 'refused', detail: 'connect ECONNREFUSED c:4318' };
    f.failed(refused, 512);
    f.failed(refused, 512);
    f.failed({ kind: 'http', detail: 'HTTP 503' }, 10);
    assert.equal(lines.length, 1);
    assert.match(
      lines[0]!,
      /^level=warn component=tracing msg="span export failed .*" to=http:\/\/c\/v1\/traces reason=refused detail="connect ECONNREFUSED c:4318" spans=512 /,
    );
    fire!();
    assert.equal(lines.length, 2);
    assert.match(
      lines[1]!,
      /msg="span exports failed .*" .*exports=2 spans=522 .*reasons="refused: connect ECONNREFUSED c:4318 \(1x\); HTTP 503 \(1x\)" now=failing/,
    );
    f.succeeded();
    fire!(); // a quiet interval: the recovery, once
    assert.match(lines[2]!, /level=info .*msg="span exports succeed again"/);
    f.failed(refused, 1);
    assert.match(lines[3]!, /msg="span export failed /);
    f.failed(refused, 7);
    f.close(); // what is pending, at the stop
    assert.match(lines[4]!, /exports=1 spans=7 /);
    assert.equal(lines.length, 5);
  });
});
