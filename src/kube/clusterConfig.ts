// Where the cluster configuration comes from: KUBECONFIG, ~/.kube/config, or the in-cluster service account,
// in KubeConfig.loadFromDefault()'s order but without its unauthenticated localhost fallback; a bad file is one
// line (ConfigError, exit 2) naming it.
import { existsSync, readFileSync, statSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { KubeConfig } from '@kubernetes/client-node';
import { ConfigError } from '../core/config.js';
import { errorMessage } from '../core/errors.js';
export interface ClusterConfig {
  kc: KubeConfig;
  namespace: string;
  /** Where the configuration came from, for the startup log line. */
  source: string;
}

const SA_DIR = '/var/run/secrets/kubernetes.io/serviceaccount';

/**
 * KubeConfig.loadFromDefault()'s order (KUBECONFIG, ~/.kube/config, in-cluster), without its last resort of
 * an unauthenticated http://localhost:8080: no configuration at all returns null, so the caller can say so.
 */
export function loadClusterConfig(
  kubeconfigPath: string,
  namespaceSetting: string,
  homeDir: string,
): ClusterConfig | null {
  const kc = new KubeConfig();
  let source: string;
  const home = join(homeDir || homedir(), '.kube', 'config');
  if (kubeconfigPath !== '') {
    source = `KUBECONFIG ${kubeconfigPath}`;
    loadKubeconfigFile(kc, kubeconfigPath.split(':')[0] ?? kubeconfigPath, source);
  } else if (existsSync(home)) {
    source = home;
    loadKubeconfigFile(kc, home, source);
  } else if (existsSync(join(SA_DIR, 'token'))) {
    kc.loadFromCluster();
    source = 'in-cluster service account';
  } else {
    return null;
  }
  if (!kc.getCurrentCluster()) throw new ConfigError(`${source}: the current context names no cluster`);
  const saNamespace = join(SA_DIR, 'namespace');
  const namespace =
    namespaceSetting ||
    (source.startsWith('in-cluster') && existsSync(saNamespace) ? readFileSync(saNamespace, 'utf8').trim() : '') ||
    kc.getContextObject(kc.getCurrentContext())?.namespace ||
    'default';
  return { kc, namespace, source };
}

/**
 * Loads one kubeconfig file. A path that is no readable kubeconfig file is a ConfigError (exit 2) naming the
 * file and what to do: the client's own errors (`EISDIR: illegal operation on a directory, read`) name neither.
 * A directory is what Docker leaves where a bind-mounted file is missing on the host (docker-compose.yml
 * mounts KUBECONFIG_HOST with the long syntax so that it refuses instead, but an older stack may have made one).
 */
function loadKubeconfigFile(kc: KubeConfig, path: string, label: string): void {
  let isDirectory: boolean;
  try {
    isDirectory = statSync(path).isDirectory();
  } catch (err: unknown) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new ConfigError(
        `${label} does not exist: point KUBECONFIG at a kubeconfig file, or unset it to use ~/.kube/config or the in-cluster service account`,
      );
    }
    throw new ConfigError(`${label}: ${errorMessage(err)}`);
  }
  if (isDirectory) {
    throw new ConfigError(
      `${label} is a directory, not a kubeconfig file (Docker makes an empty directory where a bind-mounted file is missing on the host): ` +
        'mount an existing kubeconfig file there (docker-compose: KUBECONFIG_HOST=/path/to/kubeconfig) and delete that empty directory on the host',
    );
  }
  try {
    kc.loadFromFile(path);
  } catch (err: unknown) {
    if ((err as NodeJS.ErrnoException).code === 'EACCES') {
      throw new ConfigError(
        `${label} is not readable by uid ${process.getuid?.() ?? '?'} (the image runs as uid 1000): make it readable to that user, e.g. chmod a+r`,
      );
    }
    throw new ConfigError(`${label}: ${(errorMessage(err).split('\n')[0] ?? '').trim()}`);
  }
}
