// SPDX-License-Identifier: Apache-2.0
// A program of a BPF object: attaching it, and the kernel's statistics about it.
import { check, checkPtr } from './errors';
import { BpfLink } from './link';
import { native, TestRunOpts, type Ptr } from './native';
import { programInfo, type ProgramInfo } from './info';

/** enum bpf_attach_type: an sk_msg program on a sockmap or sockhash. */
export const BPF_SK_MSG_VERDICT = 7;

export class BpfProgram {
  readonly name: string;
  readonly section: string;

  constructor(private readonly ptr: Ptr) {
    this.name = native.programName(ptr) as string;
    this.section = native.programSection(ptr) as string;
  }

  get autoload(): boolean {
    return native.programAutoload(this.ptr) as boolean;
  }

  /** Whether load() loads this program; set before load. */
  set autoload(value: boolean) {
    check(`set autoload of ${this.name}`, () => native.programSetAutoload(this.ptr, value) as number);
  }

  get fd(): number {
    return check(`fd of program ${this.name}`, () => native.programFd(this.ptr) as number);
  }

  /** Attaches where the section name says (tp_btf/..., tracepoint/..., ...). */
  attach(): BpfLink {
    return this.link(this.section, () => native.attach(this.ptr));
  }

  attachTracepoint(category: string, name: string): BpfLink {
    return this.link(`tracepoint/${category}/${name}`, () => native.attachTracepoint(this.ptr, category, name));
  }

  attachRawTracepoint(name: string): BpfLink {
    return this.link(`raw_tp/${name}`, () => native.attachRawTracepoint(this.ptr, name));
  }

  /** tp_btf, fentry, fexit: the target was fixed at load. */
  attachTrace(): BpfLink {
    return this.link(this.section, () => native.attachTrace(this.ptr));
  }

  attachKprobe(func: string, retprobe = false): BpfLink {
    return this.link(`${retprobe ? 'kretprobe' : 'kprobe'}/${func}`, () => native.attachKprobe(this.ptr, retprobe, func));
  }

  /** Attaches to a cgroup v2 directory given by an open descriptor. */
  attachCgroup(cgroupFd: number, path: string): BpfLink {
    return this.link(`${this.section} on ${path}`, () => native.attachCgroup(this.ptr, cgroupFd));
  }

  /** Attaches to a map (sk_msg and sk_skb programs on a sockmap or sockhash)
   * with the old attach call: libbpf 1.1 has no link for it. Undo with detachFromMap. */
  attachToMap(mapFd: number, attachType: number, what: string): void {
    check(`attach ${this.name} to ${what}`, () => native.progAttach(this.fd, mapFd, attachType, 0) as number);
  }

  detachFromMap(mapFd: number, attachType: number, what: string): void {
    check(`detach ${this.name} from ${what}`, () => native.progDetach(this.fd, mapFd, attachType) as number);
  }

  /** Runs the program once in the kernel (BPF_PROG_TEST_RUN) on ctx, which
   * program types such as syscall read and write back in place; returns the
   * program's return value. */
  testRun(ctx: Buffer): number {
    const opts = {
      sz: TestRunOpts.size,
      data_in: null,
      data_out: null,
      data_size_in: 0,
      data_size_out: 0,
      ctx_in: ctx,
      ctx_out: null,
      ctx_size_in: ctx.length,
      ctx_size_out: 0,
      retval: 0,
      repeat: 0,
      duration: 0,
      flags: 0,
      cpu: 0,
      batch_size: 0,
    };
    check(`test run of ${this.name}`, () => native.testRun(this.fd, opts) as number);
    return opts.retval;
  }

  /** Run time, run count and recursion misses, from bpf_prog_info. */
  info(): ProgramInfo {
    return programInfo(this.fd);
  }

  private link(target: string, call: () => unknown): BpfLink {
    return new BpfLink(checkPtr(`attach ${this.name} to ${target}`, call as () => Ptr | null), target);
  }
}
