// CPU time per thread of this process, from Linux's /proc/self/task/<tid>/schedstat
// (first field: nanoseconds on a CPU). process.cpuUsage() only gives the whole
// process; per-thread times let the benchmark split the processor's CPU into
// the inference worker threads (onnxruntime's session.run) and the rest.

import { readFileSync, readdirSync } from 'node:fs';

export type ThreadCpu = ReadonlyMap<string, number>; // tid → CPU nanoseconds

/** Every thread's CPU time now; null where /proc has no schedstat (not Linux, or schedstats off). */
export function threadCpu(): ThreadCpu | null {
  let tids: string[];
  try {
    tids = readdirSync('/proc/self/task');
  } catch {
    return null;
  }
  const out = new Map<string, number>();
  for (const tid of tids) {
    try {
      out.set(tid, Number(readFileSync(`/proc/self/task/${tid}/schedstat`, 'utf8').split(' ')[0]));
    } catch {
      // the thread ended between the listing and the read
    }
  }
  return out.size > 0 ? out : null;
}

/** CPU seconds spent by `tids` between two snapshots. */
export function cpuSecondsOf(tids: ReadonlySet<string>, before: ThreadCpu, after: ThreadCpu): number {
  let ns = 0;
  for (const tid of tids) ns += (after.get(tid) ?? 0) - (before.get(tid) ?? 0);
  return ns / 1e9;
}

/** Threads in `after` that were not in `before`. */
export function newThreads(before: ThreadCpu, after: ThreadCpu): Set<string> {
  return new Set([...after.keys()].filter((tid) => !before.has(tid)));
}

/** Whole-process CPU seconds (user + system, all threads) since `since`. */
export function processCpuSeconds(since: NodeJS.CpuUsage): number {
  const d = process.cpuUsage(since);
  return (d.user + d.system) / 1e6;
}

/**
 * CPU seconds (user + system, every thread) another process has spent so far,
 * from /proc/<pid>/stat (in USER_HZ ticks: 100 a second on Linux); NaN once
 * it is gone.
 */
export function pidCpuSeconds(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' '); // fields from the 3rd (state) on
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return Number.NaN;
  }
}
