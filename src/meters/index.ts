/** The meters part: GPU/VRAM, sandbox process tree and budget meters as events and in `status`. */
export { MetersService, createMetersService, metersOptionsFrom, sandboxProcessSource } from './service.js';
export type { MetersServiceOptions } from './service.js';
export { GpuMeter, NO_GPU_MESSAGE, UNIFIED_MEMORY_NOTE } from './gpu.js';
export type { GpuDeviceSample, GpuSample, GpuMeterState } from './gpu.js';
export { sampleProcesses, processTree, processTreeSync, releaseProcessHistory } from './proc.js';
export type { MeteredInstance, ProcessSource, ProcInstanceSample, ProcSample } from './proc.js';
export { readCgroupCounters } from './cgroup.js';
export type { CgroupCounters } from './cgroup.js';
export { BudgetMeter } from './budget.js';
export type { BudgetMeterStatus } from './budget.js';
export { parseGpuLine, parseGpuStream, parseComputeApps, parseMeminfo, GPU_QUERY_FIELDS } from './nvidia-smi.js';
export type { GpuReading, ComputeApp } from './nvidia-smi.js';
