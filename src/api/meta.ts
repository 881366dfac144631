/**
 * The metav1 subset (ObjectMeta, Condition, timestamps) shared by every kind we read or write, and what
 * the pure logic needs of a core/v1 Node.
 */

/** `metav1` timestamps: JSON gives strings; client-node's typed core APIs give Date objects. */
export type Timestamp = string | Date;

export interface ObjectMeta {
  name: string;
  namespace?: string;
  uid?: string;
  resourceVersion?: string;
  generation?: number;
  creationTimestamp?: Timestamp;
  deletionTimestamp?: Timestamp;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  finalizers?: string[];
  ownerReferences?: { apiVersion: string; kind: string; name: string; uid: string; controller?: boolean }[];
}

export type ConditionStatus = 'True' | 'False' | 'Unknown';

/** metav1.Condition. */
export interface Condition {
  type: string;
  status: ConditionStatus;
  reason: string;
  message: string;
  lastTransitionTime: string;
  observedGeneration?: number;
}

/** What the pure logic needs of a core/v1 Node (a V1Node fits). */
export interface NodeLike {
  metadata: Pick<ObjectMeta, 'name' | 'labels'> & { deletionTimestamp?: Timestamp; resourceVersion?: string; uid?: string };
}

/** Epoch ms of a metav1 timestamp; undefined when absent or unparseable. */
export function timeOf(t: Timestamp | undefined): number | undefined {
  if (t === undefined) return undefined;
  const ms = t instanceof Date ? t.getTime() : Date.parse(t);
  return Number.isNaN(ms) ? undefined : ms;
}

export function isDeleting(obj: { metadata: { deletionTimestamp?: Timestamp } }): boolean {
  return obj.metadata.deletionTimestamp !== undefined && obj.metadata.deletionTimestamp !== null;
}
