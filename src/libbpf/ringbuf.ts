// SPDX-License-Identifier: Apache-2.0
// Consumer of a BPF ring buffer map. A worker thread waits (epoll_wait) for
// the ring to have data; the main thread then drains what is there with
// ring_buffer__consume, so the event loop never blocks on the ring and the
// cost of the thread hop is paid per batch, not per event. A drain stops
// after BATCH samples and goes on in the next turn of the event loop, so that
// a full ring (a burst, or a consumer that was stopped) never holds off
// scrapes and exports for long. Samples are copied out and handed to
// onSample on the main thread.
import { check, checkPtr } from './errors';
import type { BpfMap } from './map';
import { epollWaitAsync, native, readBytes, registerCallback, sampleFnPointer, unregisterCallback, type Ptr } from './native';

/** How long a wait lasts before it re-checks whether the ring was closed. */
const WAIT_MS = 100;
/** Samples handed over in one turn of the event loop, by default. */
const BATCH = 4096;
/** What the sample callback returns to make libbpf stop, the sample taken. */
const STOP = -125; // -ECANCELED

export class RingBuffer {
  private ptr: Ptr | null;
  private readonly callback: Ptr;
  private waiting = false;
  private running = false;
  private closing = false;
  private onClosed: (() => void) | null = null;
  /** samples handed to onSample since creation */
  samples = 0;
  /** epoll_wait's output, written by the worker thread: kept for its lifetime */
  private readonly events = Buffer.alloc(16);
  /** samples the current drain may still hand over */
  private budget = Infinity;
  /** whether the current drain stopped on its budget (samples may be left) */
  private stopped = false;

  constructor(
    private readonly map: BpfMap,
    private readonly onSample: (data: Buffer) => void,
    private readonly batch = BATCH,
  ) {
    this.callback = registerCallback((_ctx: Ptr, data: Ptr, size: number | bigint) => {
      this.samples++;
      this.onSample(readBytes(data, Number(size)));
      if (--this.budget > 0) return 0;
      this.stopped = true;
      return STOP;
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
    return this.consumeUpTo(Infinity).taken;
  }

  /** Hands over at most limit samples; more: whether the ring may hold others. */
  private consumeUpTo(limit: number): { taken: number; more: boolean } {
    const ptr = this.live();
    const before = this.samples;
    this.budget = limit;
    this.stopped = false;
    try {
      check(`consume ring buffer ${this.map.name}`, () => {
        const r = native.ringbufConsume(ptr) as number;
        // the callback's own STOP comes back as libbpf's result: not an error
        return this.stopped ? 0 : r;
      });
    } finally {
      this.budget = Infinity;
    }
    return { taken: this.samples - before, more: this.stopped };
  }

  /** Drains the ring whenever it has data, from the event loop, until close().
   * A pending wait keeps the process alive, as an open socket would. */
  start(onError: (err: Error) => void = () => {}): void {
    if (this.running) return;
    this.running = true;
    const epfd = check(`epoll fd of ring buffer ${this.map.name}`, () => native.ringbufEpollFd(this.live()) as number);
    // a batch, then either the next batch (in the next turn) or a wait
    const drain = (): void => {
      if (this.closing) return this.free();
      let more = false;
      try {
        more = this.consumeUpTo(this.batch).more;
      } catch (e) {
        onError(e as Error);
      }
      if (more) setImmediate(drain);
      else wait();
    };
    const wait = (): void => {
      this.waiting = true;
      epollWaitAsync(epfd, this.events, WAIT_MS, (err, n) => {
        this.waiting = false;
        if (this.closing) return this.free();
        if (err) {
          onError(err as Error);
          wait();
        } else if (n > 0) drain();
        else wait();
      });
    };
    wait();
  }

  /** Stops waiting, drains what is left and frees the ring. Resolves once the
   * worker's wait has returned. Safe to call twice. */
  close(): Promise<void> {
    if (this.ptr === null) return Promise.resolve();
    if (this.closing) return new Promise((r) => (this.onClosed = r));
    this.closing = true;
    return new Promise((resolve) => {
      this.onClosed = resolve;
      if (!this.waiting) this.free();
    });
  }

  private free(): void {
    if (this.ptr === null) return;
    try {
      native.ringbufConsume(this.ptr);
    } finally {
      native.ringbufFree(this.ptr);
      this.ptr = null;
      unregisterCallback(this.callback);
      this.onClosed?.();
    }
  }

  private live(): Ptr {
    if (this.ptr === null || this.closing) throw new Error(`ring buffer ${this.map.name} was closed`);
    return this.ptr;
  }
}
