/**
 * Extended-resource names with kubelet's verdict (`IsExtendedResourceName`, the check its device manager
 * runs on Register). Drawn from kubelet's and apimachinery's own test tables (helpers_test.go
 * TestIsNativeResource, validation_test.go TestIsQualifiedName) plus the cases issue 11 names. The peer
 * test (test/integration/peers/kubelet-device-manager.test.ts) asks the real kubelet function about every
 * entry, so this table cannot drift from kubelet; the unit tests hold our rule, the CRD schema + CEL, the
 * operator and the plugin's overrides to it.
 */
export const KUBELET_RESOURCE_NAME_CASES: readonly (readonly [name: string, valid: boolean])[] = [
  // Issue 11: admitted by our CRD before, rejected by kubelet.
  [`example.com/${'a'.repeat(64)}`, false],
  ['examplekubernetes.io/gpu', false],
  // Native resources (TestIsNativeResource).
  ['pod.alpha.kubernetes.io/opaque-int-resource-foo', false],
  ['kubernetes.io/resource-foo', false],
  ['foo', false],
  ['', false],
  ['a/b', true],
  ['gpu.kubernetes.io/h100', false],
  ['example.com/kubernetes.io', true],
  ['kubernetes.io.example.com/gpu', true],
  ['kubernetes.example.com/gpu', true],
  // Qualified names (TestIsQualifiedName), as kubelet sees them after "requests.".
  ['simple/simple', true],
  ['now-with-dashes/simple', true],
  ['now-with-dashes/now-with-dashes', true],
  ['now.with.dots/simple', true],
  ['now-with.dashes-and.dots/simple', true],
  ['1-num.2-num/3-num', true],
  ['1234/5678', true],
  ['1.2.3.4/5678', true],
  ['example.com/Uppercase_Is_OK_123', true],
  ['requests.storage-foo', false],
  ['requests.example.com/gpu', false],
  ['only/one/slash', false],
  ['Example.com/abc', false],
  ['example_com/abc', false],
  ['example.com/', false],
  ['/simple', false],
  [`${'a'.repeat(253)}/${'b'.repeat(63)}`, false], // "requests." makes the prefix 262 characters
  [`${'a'.repeat(244)}/${'b'.repeat(63)}`, true],
  [`${'a'.repeat(245)}/b`, false],
  [`example.com/${'a'.repeat(63)}`, true],
  ['example.com/nospecialchars%^=@', false],
  ['example.com/cantendwithadash-', false],
  ['example.com/-cantstartwithadash', false],
  ['example.com/_gpu', false],
  ['example.com/gpu.a', true],
  ['example.com/GPU_A', true],
  ['example..com/gpu', false],
  ['example.com./gpu', false],
  ['-example.com/gpu', false],
  ['example.com/gpu a', false],
  ['nvidia.com/GA102_GEFORCE_RTX_3090', true],
  ['handoff.dev/10de-2204', true],
  [`${'d'.repeat(63)}.${'e'.repeat(63)}.${'f'.repeat(63)}.example.com/${'G'.repeat(63)}`, true],
  [`${'d'.repeat(64)}.example.com/gpu`, true], // kubelet does not limit a DNS label to 63 here
];
