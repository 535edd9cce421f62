// SPDX-License-Identifier: Apache-2.0
// An attachment of a program to a hook. It lasts until destroy() (or, if
// pinned, until it is unpinned as well); never left to garbage collection.
import { check, checkPtr } from './errors';
import { native, type Ptr } from './native';

export class BpfLink {
  private ptr: Ptr | null;
  private pinnedAt: string | null = null;

  constructor(
    ptr: Ptr,
    /** what it is attached to, for logs: "tp_btf/inet_sock_set_state" */
    readonly target: string,
  ) {
    this.ptr = ptr;
  }

  /** Opens a link pinned at path by an earlier run. */
  static open(path: string): BpfLink {
    const link = new BpfLink(
      checkPtr(`open link ${path}`, () => native.linkOpen(path) as Ptr | null),
      path,
    );
    link.pinnedAt = path;
    return link;
  }

  get fd(): number {
    return check(`link fd of ${this.target}`, () => native.linkFd(this.live()) as number);
  }

  get pinned(): string | null {
    return this.pinnedAt;
  }

  pin(path: string): void {
    check(`pin link ${this.target} at ${path}`, () => native.linkPin(this.live(), path) as number);
    this.pinnedAt = path;
  }

  unpin(): void {
    if (!this.pinnedAt) return;
    check(`unpin link ${this.pinnedAt}`, () => native.linkUnpin(this.live()) as number);
    this.pinnedAt = null;
  }

  /** Detaches (unless still pinned) and frees the link. Safe to call twice. */
  destroy(): void {
    if (this.ptr === null) return;
    const ptr = this.ptr;
    this.ptr = null;
    check(`destroy link ${this.target}`, () => native.linkDestroy(ptr) as number);
  }

  get destroyed(): boolean {
    return this.ptr === null;
  }

  private live(): Ptr {
    if (this.ptr === null) throw new Error(`link ${this.target} was destroyed`);
    return this.ptr;
  }
}
