// deploy/kubernetes as the tests read it: every YAML file through k8s_schema.py, which checks
// each document against the Kubernetes API's own models (Debian's python3-kubernetes) and prints
// the documents as JSON, and the pieces of the grader pod the tests look at.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const MANIFESTS_DIR = path.join(root, 'deploy/kubernetes');
const SCHEMA_SCRIPT = path.join(root, 'test/deploy/k8s_schema.py');
/** Debian's python3, which has python3-kubernetes and python3-yaml (not a pyenv one). */
const PYTHON = '/usr/bin/python3';
/** Where the image has the package (container/Dockerfile's WORKDIR). */
export const IMAGE_ROOT = '/opt/codejail';

/** A manifest document: plain JSON from the YAML, its shape checked by the tests themselves. */
export type Doc = Record<string, any>;

export interface SchemaReport {
  schema: string;
  files: Record<string, Doc[]>;
  problems: string[];
  newer: Array<{ path: string; since: string }>;
}

export function schemaCheck(files: string[]): SchemaReport {
  const out = spawnSync(PYTHON, [SCHEMA_SCRIPT, ...files], { encoding: 'utf8' });
  if (out.status !== 0) throw new Error(`k8s_schema.py failed (${out.status}): ${out.stderr}`);
  return JSON.parse(out.stdout) as SchemaReport;
}

export interface Manifests {
  yamlFiles: string[];
  report: SchemaReport;
  docs: Doc[];
  /** The one document of `kind`; throws unless there is exactly one. */
  one(kind: string): Doc;
  /** The DaemonSet's pod spec. */
  pod: Doc;
  container(name: string): Doc;
  volume(name: string): Doc;
  /** The volume mounted at `target` or above it in container `c`, with its mount. */
  mountOf(c: Doc, target: string): { mount: Doc; volume: Doc } | undefined;
  /** The ConfigMap's text for the file a container sees at `file` (throws if not from it). */
  configMapFile(c: Doc, file: string): string;
  /** A container's environment variable (a plain value). */
  env(c: Doc, name: string): string | undefined;
}

export function readManifests(): Manifests {
  const yamlFiles = fs
    .readdirSync(MANIFESTS_DIR)
    .filter((f) => f.endsWith('.yaml'))
    .sort();
  const report = schemaCheck(yamlFiles.map((f) => path.join(MANIFESTS_DIR, f)));
  const docs = Object.values(report.files).flat();
  const one = (kind: string): Doc => {
    const found = docs.filter((d) => d.kind === kind);
    if (found.length !== 1) throw new Error(`deploy/kubernetes has ${found.length} ${kind} documents, not one`);
    return found[0]!;
  };
  const pod: Doc = one('DaemonSet').spec.template.spec;
  const configMap = one('ConfigMap');
  const volume = (name: string): Doc => pod.volumes.find((v: Doc) => v.name === name);
  const mountOf = (c: Doc, target: string) => {
    const mounts: Doc[] = (c.volumeMounts ?? []).filter((m: Doc) => target === m.mountPath || target.startsWith(`${m.mountPath}/`));
    const mount = mounts.sort((x, y) => y.mountPath.length - x.mountPath.length)[0];
    return mount && { mount, volume: volume(mount.name) };
  };
  return {
    yamlFiles,
    report,
    docs,
    one,
    pod,
    container: (name) => pod.containers.find((c: Doc) => c.name === name),
    volume,
    mountOf,
    configMapFile(c, file) {
      const found = mountOf(c, file);
      if (found?.volume.configMap?.name !== configMap.metadata.name) throw new Error(`${c.name}: ${file} does not come from the ConfigMap`);
      const key = path.relative(found.mount.mountPath, file);
      if (!(key in configMap.data)) throw new Error(`the ConfigMap has no ${key} (${c.name}: ${file})`);
      return configMap.data[key];
    },
    env: (c, name) => (c.env ?? []).find((e: Doc) => e.name === name)?.value,
  };
}
