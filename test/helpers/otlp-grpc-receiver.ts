// SPDX-License-Identifier: Apache-2.0
// A real OTLP/gRPC trace receiver for tests: a gRPC server (@grpc/grpc-js)
// on loopback serving opentelemetry.proto.collector.trace.v1.TraceService/
// Export, each request decoded with the official OTLP message definitions
// (otlp-proto-definitions) into the spans OtlpReceiver gives, so that the
// same checks run over gRPC. It keeps each request's metadata and message
// encoding (gzip or identity), serves TLS (mutual, given a CA), can be stopped and started again on the same
// port, and can fail as collectors do: answer every call with a gRPC status,
// or take calls and never answer.
import * as grpc from '@grpc/grpc-js';
import { OtlpReceiver, Request, TO_OBJECT, type ProtoType } from './otlp-receiver';
// eslint-disable-next-line @typescript-eslint/no-require-imports
const root = require('otlp-proto-definitions/build/src/generated/root.js');

const Response = root.opentelemetry.proto.collector.trace.v1.ExportTraceServiceResponse as ProtoType & {
  encode(m: object): { finish(): Uint8Array };
};

/** The service as a gRPC client calls it; messages stay bytes here and are
 * decoded in the handler, so that a message that is not a request is kept
 * as an error instead of failing inside the library. */
const TRACE_SERVICE: grpc.ServiceDefinition = {
  Export: {
    path: '/opentelemetry.proto.collector.trace.v1.TraceService/Export',
    requestStream: false,
    responseStream: false,
    requestSerialize: (b: Buffer) => b,
    requestDeserialize: (b: Buffer) => b,
    responseSerialize: (b: Buffer) => b,
    responseDeserialize: (b: Buffer) => b,
  },
};

/** How the receiver misbehaves: a gRPC status for every call, or 'hang':
 * take the call, never answer. */
export type GrpcFault = { code: grpc.status; details?: string } | 'hang';

export class GrpcOtlpReceiver extends OtlpReceiver {
  grpcFault: GrpcFault | undefined;
  /** each call's metadata, as the server got it */
  readonly calls: Record<string, string[]>[] = [];
  /** the message encoding of each call (grpc-encoding: gzip, or identity) */
  readonly encodings = new Set<string>();
  private grpcServer: grpc.Server | undefined;

  override async start(): Promise<this> {
    // the encoding a call's messages come in, which the library takes out of
    // the metadata it hands on: read off its own call object (a field its
    // typings keep private), where the interceptors see it first
    const encoding: grpc.ServerInterceptor = (_method, call) => {
      const e = (call as unknown as { incomingEncoding?: unknown }).incomingEncoding;
      this.encodings.add(typeof e === 'string' ? e : 'identity');
      return new grpc.ServerInterceptingCall(call);
    };
    const server = new grpc.Server({ interceptors: [encoding] });
    server.addService(TRACE_SERVICE, { Export: (call: grpc.ServerUnaryCall<Buffer, Buffer>, done: grpc.sendUnaryData<Buffer>) => this.export(call, done) });
    const t = this.tls;
    const credentials = t
      ? grpc.ServerCredentials.createSsl(t.clientCa ?? null, [{ private_key: t.key, cert_chain: t.cert }], !!t.clientCa)
      : grpc.ServerCredentials.createInsecure();
    this.port = await new Promise<number>((resolve, reject) =>
      server.bindAsync(`127.0.0.1:${this.port}`, credentials, (err, port) => (err ? reject(err) : resolve(port))),
    );
    this.grpcServer = server;
    return this;
  }

  /** Stops serving and ends every call in flight: the collector is down. */
  override async stop(): Promise<void> {
    const s = this.grpcServer;
    this.grpcServer = undefined;
    s?.forceShutdown();
  }

  private export(call: grpc.ServerUnaryCall<Buffer, Buffer>, done: grpc.sendUnaryData<Buffer>): void {
    this.requests++;
    const md: Record<string, string[]> = {};
    for (const k of Object.keys(call.metadata.getMap())) md[k] = call.metadata.get(k).map(String);
    this.calls.push(md);
    const fault = this.grpcFault;
    if (fault === 'hang') return;
    if (fault) {
      done({ code: fault.code, details: fault.details ?? `fault: ${grpc.status[fault.code]}` });
      return;
    }
    try {
      this.collect(Request.toObject(Request.decode(call.request), TO_OBJECT));
      done(null, Buffer.from(Response.encode({}).finish()));
    } catch (err) {
      this.errors.push((err as Error).message);
      done({ code: grpc.status.INVALID_ARGUMENT, details: (err as Error).message });
    }
  }
}
