// SPDX-License-Identifier: Apache-2.0
// A connection's span, built straight from its event as the record the SDK's
// exporters serialize (ReadableSpan): the event is final when it arrives, so
// there is nothing to record over time, and going through the SDK's live span
// (attribute checks, clock handling, one object per call) cost more than the
// span itself. Attributes are built here with fixed types, so the checks the
// SDK would make cannot fail.
import { SpanKind, SpanStatusCode, TraceFlags, type Attributes, type HrTime, type Link, type SpanContext, type SpanStatus } from '@opentelemetry/api';
import type { InstrumentationScope } from '@opentelemetry/core';
import type { Resource } from '@opentelemetry/resources';
import type { ReadableSpan, TimedEvent } from '@opentelemetry/sdk-trace';
import type { KernelClock } from './clock';
import type { ConnEvent } from './conn-event';

/** What every span of this exporter shares. */
export interface SpanOrigin {
  resource: Resource;
  instrumentationScope: InstrumentationScope;
  clock: KernelClock;
}

const NO_LINKS: Link[] = [];
const OK: SpanStatus = { code: SpanStatusCode.UNSET };

export class ConnSpan implements ReadableSpan {
  readonly name: string;
  readonly kind: SpanKind;
  readonly parentSpanContext: SpanContext | undefined;
  readonly startTime: HrTime;
  readonly endTime: HrTime;
  readonly status: SpanStatus;
  readonly attributes: Attributes;
  readonly links = NO_LINKS;
  readonly events: TimedEvent[] = [];
  readonly ended = true;
  readonly resource: Resource;
  readonly instrumentationScope: InstrumentationScope;
  readonly droppedAttributesCount = 0;
  readonly droppedEventsCount = 0;
  readonly droppedLinksCount = 0;
  private readonly context: SpanContext;

  /** ids: the span's own, its trace's and its parent span's ('': none). */
  constructor(e: ConnEvent, traceId: string, spanId: string, parentSpanId: string, origin: SpanOrigin) {
    const client = e.role === 'client';
    this.name = client ? 'tcp connect' : 'tcp accept';
    this.kind = client ? SpanKind.CLIENT : SpanKind.SERVER;
    this.context = { traceId, spanId, traceFlags: TraceFlags.SAMPLED };
    this.parentSpanContext = parentSpanId ? { traceId, spanId: parentSpanId, traceFlags: TraceFlags.SAMPLED, isRemote: true } : undefined;
    this.resource = origin.resource;
    this.instrumentationScope = origin.instrumentationScope;
    const clock = origin.clock;
    clock.sync(e.endNs);
    this.startTime = clock.toHrTime(e.startNs);
    this.endTime = clock.toHrTime(e.endNs);
    const attributes: Attributes = {
      'network.transport': 'tcp',
      'network.type': e.family,
      'network.local.address': e.localAddress,
      'network.local.port': e.localPort,
      'network.peer.address': e.peerAddress,
      'network.peer.port': e.peerPort,
      'process.pid': e.pid,
      'bpfnet.tcp.sent_bytes': e.sentBytes,
      'bpfnet.tcp.received_bytes': e.receivedBytes,
      'bpfnet.tcp.retransmits': e.retransmits,
    };
    if (e.comm) attributes['process.executable.name'] = e.comm;
    Object.assign(attributes, workloadAttributes(e));
    if (e.srttUs) attributes['bpfnet.tcp.srtt'] = e.srttUs / 1e6;
    if (e.kind === 'connect_failed') {
      attributes['error.type'] = e.result;
      attributes['bpfnet.tcp.connect.result'] = e.result;
      this.status = { code: SpanStatusCode.ERROR, message: `connect ${e.result}` };
    } else {
      this.status = OK;
    }
    this.attributes = attributes;
    if (e.establishedNs) {
      this.events.push({
        name: 'tcp.established',
        time: clock.toHrTime(e.establishedNs),
        attributes: { 'bpfnet.tcp.handshake.duration': (e.establishedNs - e.startNs) / 1e9 },
      });
    }
    if (e.finNs) this.events.push({ name: 'tcp.fin', time: clock.toHrTime(e.finNs), attributes: { 'bpfnet.tcp.fin.from': e.finFrom } });
  }

  spanContext(): SpanContext {
    return this.context;
  }

  get duration(): HrTime {
    let s = this.endTime[0] - this.startTime[0];
    let ns = this.endTime[1] - this.startTime[1];
    if (ns < 0) [s, ns] = [s - 1, ns + 1e9];
    return [s, ns];
  }
}

/** The connection's owner and its peer, as OpenTelemetry's Kubernetes and
 * container attributes name them (per span: one exporter serves every pod
 * of a node); outside pods, the owner's cgroup path. */
export function workloadAttributes(e: ConnEvent): Attributes {
  const a: Attributes = {};
  const w = e.workload;
  if (w?.namespace) a['k8s.namespace.name'] = w.namespace;
  if (w?.pod) a['k8s.pod.name'] = w.pod;
  if (w?.podUid) a['k8s.pod.uid'] = w.podUid;
  if (w?.container) a['k8s.container.name'] = w.container;
  if (w?.containerId) a['container.id'] = w.containerId;
  if (w?.cgroup) a['bpfnet.cgroup'] = w.cgroup;
  if (e.peerWorkload) {
    a['bpfnet.peer.k8s.namespace.name'] = e.peerWorkload.namespace;
    a['bpfnet.peer.k8s.pod.name'] = e.peerWorkload.pod;
  }
  return a;
}
