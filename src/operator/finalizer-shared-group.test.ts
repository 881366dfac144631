/**
 * The delete flow of a GpuPassthrough whose GPU shares its IOMMU group with a GPU another policy wants:
 * the agent keeps it on vfio-pci, withdrawn (Releasing/SharesIommuGroup), until that GPU goes too. It is no
 * longer the deleting policy's, so it must not hold the deletion; a GPU still Releasing for any other
 * reason (a pod holds it) does.
 */
import { describe, expect, it } from 'vitest';
import { FINALIZER } from '../api/v1alpha1/index.js';
import { decideFinalizer } from './finalizer.js';
import { gpu, gpuStatus, node, nodeState, policy } from '../testing/operator-fixtures.js';

const dying = policy('p', {}, { deletionTimestamp: '2026-05-02T00:00:00Z', finalizers: [FINALIZER] });

describe('decideFinalizer: a GPU kept on vfio-pci by its IOMMU group', () => {
  it('Releasing/SharesIommuGroup does not hold the deletion', () => {
    const states = new Map([['a', nodeState('a', [gpu(0)], {}, [gpuStatus(gpu(0).address, 'Releasing', { reason: 'SharesIommuGroup' })])]]);
    expect(decideFinalizer(dying, [node('a')], states)).toEqual({ kind: 'removeFinalizer' });
  });

  it('Releasing/InUse still does', () => {
    const states = new Map([['a', nodeState('a', [gpu(0)], {}, [gpuStatus(gpu(0).address, 'Releasing', { reason: 'InUse', message: 'in use by pod vms/a' })])]]);
    expect(decideFinalizer(dying, [node('a')], states)).toMatchObject({
      kind: 'waitForRelease',
      pending: [{ node: 'a', address: gpu(0).address, state: 'Releasing', reason: 'InUse', message: 'in use by pod vms/a' }],
    });
  });
});
