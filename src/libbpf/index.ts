// SPDX-License-Identifier: Apache-2.0
export { BpfObject, type Constant } from './object';
export { BpfProgram, BPF_SK_MSG_VERDICT } from './program';
export { BpfLink } from './link';
export { cString, escapedText } from './text';
export { BpfMap, MapType, UpdateFlags, numPossibleCpus, sumPerCpu, type MapEntry } from './map';
export { RingBuffer } from './ringbuf';
export { Btf, Kind } from './btf';
export { bindLayout, Layout, LayoutError, type StructSpec, type FieldSpec } from './layout';
export { BpfError, MissingFeatureError, errnoName, summaryOf, detailOf } from './errors';
export { programInfo, mapInfo, enableRunTimeStats, vmlinuxBtf, libbpfVersion, type ProgramInfo, type MapInfo } from './info';
export { setLibbpfLogger } from './log';
export { pinObject, openPinned, closeFd } from './pin';
