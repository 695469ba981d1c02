import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { autoIntraOpThreads, cgroupCpuQuota, usableCpus } from '../../src/model/cpus.js';

const files = (map: Record<string, string>) => (path: string): string | null => map[path] ?? null;

describe('usable CPUs', () => {
  it('reads the cgroup v2 quota, and "max" as none', () => {
    assert.equal(cgroupCpuQuota(files({ '/sys/fs/cgroup/cpu.max': '200000 100000\n' })), 2);
    assert.equal(cgroupCpuQuota(files({ '/sys/fs/cgroup/cpu.max': '150000 100000' })), 1.5);
    assert.equal(cgroupCpuQuota(files({ '/sys/fs/cgroup/cpu.max': 'max 100000\n' })), null);
  });

  it('reads the cgroup v1 CFS quota, and -1 as none', () => {
    assert.equal(cgroupCpuQuota(files({ '/sys/fs/cgroup/cpu/cpu.cfs_quota_us': '400000', '/sys/fs/cgroup/cpu/cpu.cfs_period_us': '100000' })), 4);
    assert.equal(cgroupCpuQuota(files({ '/sys/fs/cgroup/cpu/cpu.cfs_quota_us': '-1', '/sys/fs/cgroup/cpu/cpu.cfs_period_us': '100000' })), null);
    assert.equal(cgroupCpuQuota(files({})), null);
  });

  it('takes the smaller of cores and quota, whole CPUs, at least one', () => {
    assert.equal(usableCpus(files({ '/sys/fs/cgroup/cpu.max': '200000 100000' }), 64), 2, 'a 2-CPU pod on a 64-core node');
    assert.equal(usableCpus(files({ '/sys/fs/cgroup/cpu.max': '150000 100000' }), 64), 1);
    assert.equal(usableCpus(files({ '/sys/fs/cgroup/cpu.max': '50000 100000' }), 64), 1);
    assert.equal(usableCpus(files({ '/sys/fs/cgroup/cpu.max': 'max 100000' }), 8), 8);
    assert.equal(usableCpus(files({ '/sys/fs/cgroup/cpu.max': '1600000 100000' }), 8), 8, 'a quota above the cores');
  });

  it('shares them between the workers', () => {
    assert.equal(autoIntraOpThreads(1, 2), 2);
    assert.equal(autoIntraOpThreads(2, 2), 1);
    assert.equal(autoIntraOpThreads(3, 2), 1);
    assert.equal(autoIntraOpThreads(2, 8), 4);
  });
});
