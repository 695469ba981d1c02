// How many CPUs this process may use, for the default number of onnxruntime
// threads: the cgroup's CPU quota when one is set (a Kubernetes CPU limit),
// else the cores it may run on. Node's availableParallelism() sees only the
// cores: in a pod limited to 2 CPUs on a 64-core node it says 64, and 64
// intra-op threads per worker would thrash under the quota.

import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';

type Read = (path: string) => string | null;

const readOrNull: Read = (path) => {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return null;
  }
};

/** The CPU quota of this process's cgroup in CPUs (v2 `cpu.max`, else v1 CFS files), or null when unlimited or unknown. */
export function cgroupCpuQuota(read: Read = readOrNull): number | null {
  const v2 = read('/sys/fs/cgroup/cpu.max')?.trim().split(/\s+/);
  if (v2 !== undefined && v2.length === 2) return v2[0] === 'max' ? null : ratio(Number(v2[0]), Number(v2[1]));
  const quota = Number(read('/sys/fs/cgroup/cpu/cpu.cfs_quota_us')?.trim());
  const period = Number(read('/sys/fs/cgroup/cpu/cpu.cfs_period_us')?.trim());
  return quota > 0 ? ratio(quota, period) : null;
}

const ratio = (quota: number, period: number): number | null => (Number.isFinite(quota) && Number.isFinite(period) && quota > 0 && period > 0 ? quota / period : null);

/** Whole CPUs this process may keep busy (at least 1). */
export function usableCpus(read: Read = readOrNull, cores: number = availableParallelism()): number {
  const quota = cgroupCpuQuota(read);
  return Math.max(1, Math.floor(Math.min(cores, quota ?? cores)));
}

/** onnxruntime intra-op threads per worker when none are configured: the usable CPUs shared between the workers. */
export function autoIntraOpThreads(workers: number, cpus: number = usableCpus()): number {
  return Math.max(1, Math.floor(cpus / Math.max(1, workers)));
}
