// SPDX-License-Identifier: Apache-2.0
// Consumer of a BPF ring buffer map. The event loop watches the ring's epoll
// descriptor and drains it when readable, so consuming never blocks; each
// sample is copied out and handed to onSample on the main thread.
import { check, checkPtr } from './errors';
import type { BpfMap } from './map';
import {
  native,
  pollReadable,
  readBytes,
  registerCallback,
  sampleFnPointer,
  unregisterCallback,
  type Ptr,
} from './native';

export class RingBuffer {
  private ptr: Ptr | null;
  private readonly callback: Ptr;
  private poller: { close(): void; unref(): void } | null = null;
  /** samples handed to onSample since creation */
  samples = 0;

  constructor(
    private readonly map: BpfMap,
    private readonly onSample: (data: Buffer) => void,
  ) {
    this.callback = registerCallback((_ctx: Ptr, data: Ptr, size: number | bigint) => {
      this.samples++;
      this.onSample(readBytes(data, Number(size)));
      return 0;
    }, sampleFnPointer);
    try {
      this.ptr = checkPtr(`ring buffer on map ${map.name}`, () => native.ringbufNew(map.fd, this.callback, null, null) as Ptr | null);
    } catch (err) {
      unregisterCallback(this.callback);
      throw err;
    }
  }

  /** Drains what is in the ring now; returns the number of samples. */
  consume(): number {
    const ptr = this.live();
    return check(`consume ring buffer ${this.map.name}`, () => native.ringbufConsume(ptr) as number);
  }

  /** Drains the ring whenever it becomes readable, from the event loop. The
   * watch does not keep the process alive by itself. */
  start(onError: (err: Error) => void = () => {}): void {
    if (this.poller) return;
    const fd = check(`epoll fd of ring buffer ${this.map.name}`, () => native.ringbufEpollFd(this.live()) as number);
    this.poller = pollReadable(fd, () => {
      try {
        this.consume();
      } catch (err) {
        onError(err as Error);
      }
    });
    this.poller.unref();
  }

  /** Stops watching, drains what is left and frees the ring. Safe to call twice. */
  close(): void {
    if (this.ptr === null) return;
    this.poller?.close();
    this.poller = null;
    try {
      native.ringbufConsume(this.ptr);
    } finally {
      native.ringbufFree(this.ptr);
      this.ptr = null;
      unregisterCallback(this.callback);
    }
  }

  private live(): Ptr {
    if (this.ptr === null) throw new Error(`ring buffer ${this.map.name} was closed`);
    return this.ptr;
  }
}
