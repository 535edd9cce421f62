// SPDX-License-Identifier: Apache-2.0
// sidecar: where a request's time goes between a sidecar proxy and its
// application. For each connection a named proxy accepts, the kernel times
// (a) the proxy's accept to its connect upstream, on the thread that serves
// the connection (the one that accepted it or last read from it), and (b)
// that connect to the application's accept of it, matched by four-tuple;
// inbound connections the proxy forwards over an older upstream connection
// are counted instead (bpf/tcp-lifecycle.bpf.c, sidecar_*).
//   bpfnet_sidecar_forward_seconds_bucket{sidecar="envoy",le="0.000262144"} 41
import { UpdateFlags, type BpfObject } from '../libbpf';
import { TCP_LIFECYCLE } from '../generated/tcp-lifecycle';
import { COMM_LEN, type Sidecar } from '../options';

/** Writes the sidecars into the loaded object's maps. */
export function applySidecars(obj: BpfObject<typeof TCP_LIFECYCLE>, sidecars: readonly Sidecar[]): void {
  const index = Buffer.alloc(4);
  sidecars.forEach((s, i) => {
    index.writeUInt32LE(i);
    for (const comm of s.comms) {
      const key = Buffer.alloc(COMM_LEN);
      key.write(comm);
      obj.map('sidecar_comms').update(key, index, UpdateFlags.Any);
    }
    for (const pid of s.pids) {
      const key = Buffer.alloc(4);
      key.writeUInt32LE(pid);
      obj.map('sidecar_pids').update(key, index, UpdateFlags.Any);
    }
  });
}
