import { KubeConfig } from '@kubernetes/client-node';

/** --kubeconfig, else $KUBECONFIG / ~/.kube/config, else the in-cluster service account (client-node's default order). */
export function loadKubeConfig(path: string | undefined): KubeConfig {
  const kc = new KubeConfig();
  if (path) kc.loadFromFile(path);
  else kc.loadFromDefault();
  return kc;
}
