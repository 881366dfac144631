import { describe, expect, it } from 'vitest';
import { gpuStatus, nodeState, policy } from '../testing/operator-fixtures.js';
import { resourceConflicts } from './resource-conflicts.js';

describe(resourceConflicts.name, () => {
  it('reports two names on one node that map to one PCI_RESOURCE_* variable (case, . vs _)', () => {
    const p = policy('a', { resourceName: 'example.com/gpu.a' });
    const states = new Map([
      ['n1', nodeState('n1', [], { gpus: [{ address: '0000:01:00.0', policy: 'a', resourceName: 'example.com/gpu.a' }, { address: '0000:02:00.0', policy: 'b', resourceName: 'example.com/GPU_A' }] })],
      ['n2', nodeState('n2', [], { gpus: [{ address: '0000:01:00.0', policy: 'a', resourceName: 'example.com/gpu.a' }] })],
    ]);
    const out = resourceConflicts(p, { states });
    expect(out).toHaveLength(1);
    expect(out[0]!.reason).toBe('ResourceEnvVarClash');
    expect(out[0]!.message).toContain('n1: example.com/gpu.a and example.com/GPU_A share PCI_RESOURCE_EXAMPLE_COM_GPU_A');
    expect(out[0]!.message).not.toContain('n2');
  });

  it('sees a clash with a default name the agent reported, and none for names that only look alike (- vs _)', () => {
    const p = policy('a', { resourceName: 'example.com/gpu-a' });
    const states = new Map([
      ['n1', nodeState('n1', [], { gpus: [{ address: '0000:01:00.0', policy: 'a', resourceName: 'example.com/gpu-a' }, { address: '0000:02:00.0', policy: 'b' }] }, [gpuStatus('0000:02:00.0', 'Ready', { resourceName: 'example.com/gpu_a' })])],
    ]);
    expect(resourceConflicts(p, { states })).toEqual([]);
    const q = policy('b', {});
    const clash = new Map([
      ['n1', nodeState('n1', [], { gpus: [{ address: '0000:01:00.0', policy: 'a', resourceName: 'example.com/gpu.a' }, { address: '0000:02:00.0', policy: 'b' }] }, [gpuStatus('0000:02:00.0', 'Ready', { resourceName: 'example.com/gpu_a' })])],
    ]);
    expect(resourceConflicts(q, { states: clash }).map((c) => c.reason)).toEqual(['ResourceEnvVarClash']);
  });

  it('reports a name kubelet would refuse (an old CRD admitted it)', () => {
    const out = resourceConflicts(policy('a', { resourceName: 'examplekubernetes.io/gpu' }), { states: new Map() });
    expect(out.map((c) => c.reason)).toEqual(['InvalidResourceName']);
  });
});
