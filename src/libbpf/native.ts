// SPDX-License-Identifier: Apache-2.0
// The system libbpf (libbpf.so.1) and the few libc calls it needs, through koffi.
// This is the only file that imports koffi. Nothing here checks results:
// callers go through check.ts, which turns failures into BpfError.
import koffi, { type LibraryHandle, type TypeObject } from 'koffi';

/** A C pointer: koffi 3 passes them as BigInt (NULL as null). */
export type Ptr = bigint;

function loadLibrary(name: string): LibraryHandle {
  try {
    return koffi.load(name);
  } catch (err) {
    throw new Error(`cannot load ${name} (${(err as Error).message}): install it with "apt-get install libbpf1"`, { cause: err });
  }
}

const libbpf = loadLibrary('libbpf.so.1');
const libc = loadLibrary('libc.so.6');

koffi.opaque('bpf_object');
koffi.opaque('bpf_program');
koffi.opaque('bpf_map');
koffi.opaque('bpf_link');
koffi.opaque('btf');
koffi.opaque('ring_buffer');
const printFn = koffi.proto('int libbpf_print_fn(int level, const char *fmt, void *ap)');
const sampleFn = koffi.proto('int ring_buffer_sample_fn(void *ctx, void *data, size_t size)');

/** libbpf's struct bpf_test_run_opts (bpf.h), sized by its sz field. */
export const TestRunOpts = koffi.struct('bpf_test_run_opts', {
  sz: 'size_t',
  data_in: 'void *',
  data_out: 'void *',
  data_size_in: 'uint32_t',
  data_size_out: 'uint32_t',
  ctx_in: 'void *',
  ctx_out: 'void *',
  ctx_size_in: 'uint32_t',
  ctx_size_out: 'uint32_t',
  retval: 'uint32_t',
  repeat: 'int',
  duration: 'uint32_t',
  flags: 'uint32_t',
  cpu: 'uint32_t',
  batch_size: 'uint32_t',
});

const f = (proto: string) => libbpf.func(proto);

export const native = {
  // objects
  openFile: f('bpf_object *bpf_object__open_file(const char *path, void *opts)'),
  objectLoad: f('int bpf_object__load(bpf_object *obj)'),
  objectClose: f('void bpf_object__close(bpf_object *obj)'),
  objectBtf: f('btf *bpf_object__btf(bpf_object *obj)'),
  findMap: f('bpf_map *bpf_object__find_map_by_name(bpf_object *obj, const char *name)'),
  findProgram: f('bpf_program *bpf_object__find_program_by_name(bpf_object *obj, const char *name)'),
  nextProgram: f('bpf_program *bpf_object__next_program(bpf_object *obj, bpf_program *prev)'),
  nextMap: f('bpf_map *bpf_object__next_map(bpf_object *obj, bpf_map *prev)'),
  btfRawData: f('void *btf__raw_data(btf *btf, _Out_ uint32_t *size)'),
  btfLoadVmlinux: f('btf *btf__load_vmlinux_btf()'),
  btfFree: f('void btf__free(btf *btf)'),

  // programs
  programName: f('const char *bpf_program__name(bpf_program *prog)'),
  programSection: f('const char *bpf_program__section_name(bpf_program *prog)'),
  programSetAutoload: f('int bpf_program__set_autoload(bpf_program *prog, bool autoload)'),
  programAutoload: f('bool bpf_program__autoload(bpf_program *prog)'),
  programFd: f('int bpf_program__fd(bpf_program *prog)'),
  attach: f('bpf_link *bpf_program__attach(bpf_program *prog)'),
  attachTracepoint: f('bpf_link *bpf_program__attach_tracepoint(bpf_program *prog, const char *category, const char *name)'),
  attachRawTracepoint: f('bpf_link *bpf_program__attach_raw_tracepoint(bpf_program *prog, const char *name)'),
  attachTrace: f('bpf_link *bpf_program__attach_trace(bpf_program *prog)'),
  attachCgroup: f('bpf_link *bpf_program__attach_cgroup(bpf_program *prog, int cgroup_fd)'),
  attachKprobe: f('bpf_link *bpf_program__attach_kprobe(bpf_program *prog, bool retprobe, const char *func)'),
  testRun: f('int bpf_prog_test_run_opts(int prog_fd, _Inout_ bpf_test_run_opts *opts)'),

  // links
  linkDestroy: f('int bpf_link__destroy(bpf_link *link)'),
  linkPin: f('int bpf_link__pin(bpf_link *link, const char *path)'),
  linkUnpin: f('int bpf_link__unpin(bpf_link *link)'),
  linkFd: f('int bpf_link__fd(bpf_link *link)'),
  linkOpen: f('bpf_link *bpf_link__open(const char *path)'),

  // maps, before load (libbpf's view)
  mapName: f('const char *bpf_map__name(bpf_map *map)'),
  mapFd: f('int bpf_map__fd(bpf_map *map)'),
  mapType: f('int bpf_map__type(bpf_map *map)'),
  mapKeySize: f('uint32_t bpf_map__key_size(bpf_map *map)'),
  mapValueSize: f('uint32_t bpf_map__value_size(bpf_map *map)'),
  mapMaxEntries: f('uint32_t bpf_map__max_entries(bpf_map *map)'),
  mapSetMaxEntries: f('int bpf_map__set_max_entries(bpf_map *map, uint32_t max)'),
  mapSetAutocreate: f('int bpf_map__set_autocreate(bpf_map *map, bool autocreate)'),
  mapBtfKeyTypeId: f('uint32_t bpf_map__btf_key_type_id(bpf_map *map)'),
  mapBtfValueTypeId: f('uint32_t bpf_map__btf_value_type_id(bpf_map *map)'),
  mapInitialValue: f('void *bpf_map__initial_value(bpf_map *map, _Out_ size_t *size)'),
  mapReuseFd: f('int bpf_map__reuse_fd(bpf_map *map, int fd)'),

  // maps, by descriptor (the kernel's view)
  lookup: f('int bpf_map_lookup_elem(int fd, void *key, void *value)'),
  update: f('int bpf_map_update_elem(int fd, void *key, void *value, uint64_t flags)'),
  delete: f('int bpf_map_delete_elem(int fd, void *key)'),
  lookupAndDelete: f('int bpf_map_lookup_and_delete_elem(int fd, void *key, void *value)'),
  nextKey: f('int bpf_map_get_next_key(int fd, void *key, void *next_key)'),
  lookupBatch: f('int bpf_map_lookup_batch(int fd, void *in_batch, void *out_batch, void *keys, void *values, _Inout_ uint32_t *count, void *opts)'),
  lookupAndDeleteBatch: f(
    'int bpf_map_lookup_and_delete_batch(int fd, void *in_batch, void *out_batch, void *keys, void *values, _Inout_ uint32_t *count, void *opts)',
  ),

  // descriptors and the file system
  objPin: f('int bpf_obj_pin(int fd, const char *path)'),
  objGet: f('int bpf_obj_get(const char *path)'),
  objInfo: f('int bpf_obj_get_info_by_fd(int fd, void *info, _Inout_ uint32_t *len)'),
  progGetFdById: f('int bpf_prog_get_fd_by_id(uint32_t id)'),
  progGetNextId: f('int bpf_prog_get_next_id(uint32_t start, _Out_ uint32_t *next)'),
  enableStats: f('int bpf_enable_stats(int type)'),
  progAttach: f('int bpf_prog_attach(int prog_fd, int attachable_fd, int type, unsigned int flags)'),
  progDetach: f('int bpf_prog_detach2(int prog_fd, int attachable_fd, int type)'),

  // ring buffers
  ringbufNew: f('ring_buffer *ring_buffer__new(int map_fd, ring_buffer_sample_fn *cb, void *ctx, void *opts)'),
  ringbufPoll: f('int ring_buffer__poll(ring_buffer *rb, int timeout_ms)'),
  ringbufConsume: f('int ring_buffer__consume(ring_buffer *rb)'),
  ringbufFree: f('void ring_buffer__free(ring_buffer *rb)'),
  ringbufEpollFd: f('int ring_buffer__epoll_fd(ring_buffer *rb)'),

  // library
  strerror: f('int libbpf_strerror(int err, _Out_ uint8_t *buf, size_t size)'),
  numPossibleCpus: f('int libbpf_num_possible_cpus()'),
  majorVersion: f('uint32_t libbpf_major_version()'),
  minorVersion: f('uint32_t libbpf_minor_version()'),
  setPrint: libbpf.func('libbpf_set_print', 'void *', [koffi.pointer(printFn)]),
  probeProgType: f('int libbpf_probe_bpf_prog_type(int type, void *opts)'),
  probeMapType: f('int libbpf_probe_bpf_map_type(int type, void *opts)'),

  // libc
  vsnprintf: libc.func('int vsnprintf(_Out_ uint8_t *buf, size_t size, const char *fmt, void *ap)'),
  close: libc.func('int close(int fd)'),
  epollWait: libc.func('int epoll_wait(int epfd, _Out_ uint8_t *events, int maxevents, int timeout)'),
};

export const printFnPointer = koffi.pointer(printFn);
export const sampleFnPointer = koffi.pointer(sampleFn);

export function errno(): number {
  return koffi.errno();
}

/** Registers a long-lived C callback; release it with unregisterCallback. */
export function registerCallback(fn: (...args: never[]) => unknown, type: TypeObject): Ptr {
  return koffi.register(fn, type);
}

export function unregisterCallback(handle: Ptr): void {
  koffi.unregister(handle);
}

/** Waits up to timeoutMs on a worker thread for epfd to have an event;
 * done(err, n) then runs on the main thread with the number of ready events. */
/** epoll_wait() on a worker thread. events must stay alive (referenced by
 * the caller) until done runs: koffi writes it from that thread. */
export function epollWaitAsync(epfd: number, events: Buffer, timeoutMs: number, done: (err: unknown, n: number) => void): void {
  native.epollWait.async(epfd, events, 1, timeoutMs, done);
}

/** The bytes at ptr, copied out of C memory. */
export function readBytes(ptr: Ptr, length: number): Buffer {
  return Buffer.from(Buffer.from(koffi.view(ptr, length)));
}

/** A writable view of C memory (no copy). */
export function viewBytes(ptr: Ptr, length: number): Buffer {
  return Buffer.from(koffi.view(ptr, length));
}
