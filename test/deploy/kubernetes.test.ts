// deploy/kubernetes, checked offline: every document against the Kubernetes API's own models
// (Debian's python3-kubernetes, via k8s_schema.py, which also reads the YAML), then its structure
// against what the rest of the repository says: the container image's capability set
// (container/README.md), its paths and socket group (container/Dockerfile), the daemon's config
// schema (src/daemon/config.ts), serve's own config reader (`codejail serve` is started with the
// ConfigMap's serve.json), the CLI's `check`, and the Pod Security level the namespace declares.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { CHECK_USAGE } from '../../src/cli/check.js';
import { parseListen } from '../../src/cli/serve.js';
import { parseConfig } from '../../src/daemon/config.js';
import type { DaemonConfig } from '../../src/config/schema.js';
import { DEFAULT_HTTP_LIMITS } from '../../src/http/server.js';
import { followLogLines } from '../helpers/log_lines.js';
import { CLI_MAIN, SERVE_UID } from '../helpers/serve.js';
import { IMAGE_ROOT, MANIFESTS_DIR as dir, readManifests, root, schemaCheck, type Doc } from './manifests.js';

const { yamlFiles, report, docs, one, pod, container, mountOf, configMapFile, env } = readManifests();
const namespace = one('Namespace');
const configMap = one('ConfigMap');
const daemonSet = one('DaemonSet');
const service = one('Service');
const networkPolicy = one('NetworkPolicy');
const kustomization = one('Kustomization');
const daemon = container('codejaild');
const http = container('http');

const configDir = (): string => path.dirname(env(daemon, 'CODEJAIL_CONFIG')!);
const daemonConfig: DaemonConfig = parseConfig(JSON.parse(configMapFile(daemon, env(daemon, 'CODEJAIL_CONFIG')!)), 'ConfigMap config.json');
const servePath = http.args[http.args.indexOf('--config') + 1];
const serveConfig: Record<string, any> = JSON.parse(configMapFile(http, servePath));

/** Kubernetes quantities (the ones used here): 1Gi, 768Mi, 100m, 2. */
function quantity(value: string | number): number {
  const match = /^(\d+(?:\.\d+)?)(Ki|Mi|Gi|Ti|m)?$/.exec(String(value));
  if (!match) throw new Error(`not a quantity: ${value}`);
  const scale = { Ki: 2 ** 10, Mi: 2 ** 20, Gi: 2 ** 30, Ti: 2 ** 40, m: 1e-3 }[match[2] ?? ''] ?? 1;
  return Number(match[1]) * scale;
}

/** container/README.md's capability set: its table's rows and its `docker run --cap-add`s. */
function documentedCapabilities(): { table: string[]; dockerRun: string[] } {
  const readme = fs.readFileSync(path.join(root, 'container/README.md'), 'utf8');
  const section = readme.slice(readme.indexOf('### The capabilities'), readme.indexOf('### Seccomp'));
  const table = [...section.matchAll(/^\| (CAP_[A-Z_]+) \|/gm)].map((m) => m[1]!);
  const dockerRun = [...readme.matchAll(/--cap-add (CAP_[A-Z_]+)/g)].map((m) => m[1]!).filter((c) => c !== 'CAP_DAC_OVERRIDE');
  return { table, dockerRun };
}

// Pod Security Standards (kubernetes.io/docs/concepts/security/pod-security-standards), the rules
// these manifests come near: what a pod or container does that the level forbids.
const BASELINE_CAPABILITIES = new Set(['AUDIT_WRITE', 'CHOWN', 'DAC_OVERRIDE', 'FOWNER', 'FSETID', 'KILL', 'MKNOD', 'NET_BIND_SERVICE', 'SETFCAP', 'SETGID', 'SETPCAP', 'SETUID', 'SYS_CHROOT']);
function baselineViolations(spec: Doc): string[] {
  const out: string[] = [];
  for (const key of ['hostNetwork', 'hostPID', 'hostIPC']) if (spec[key]) out.push(key);
  for (const v of spec.volumes ?? []) if (v.hostPath) out.push(`hostPath volume ${v.name}`);
  for (const c of spec.containers) {
    const sc = c.securityContext ?? {};
    if (sc.privileged) out.push(`${c.name}: privileged`);
    for (const cap of sc.capabilities?.add ?? []) if (!BASELINE_CAPABILITIES.has(cap)) out.push(`${c.name}: capability ${cap}`);
    if (sc.seccompProfile?.type === 'Unconfined') out.push(`${c.name}: seccomp Unconfined`);
    if (sc.appArmorProfile?.type === 'Unconfined') out.push(`${c.name}: AppArmor Unconfined`);
  }
  return out;
}
function restrictedViolations(c: Doc): string[] {
  const sc = c.securityContext ?? {};
  const out: string[] = [];
  if (sc.runAsNonRoot !== true || sc.runAsUser === 0) out.push('runs as root');
  if (sc.allowPrivilegeEscalation !== false) out.push('allowPrivilegeEscalation not false');
  if (!(sc.capabilities?.drop ?? []).includes('ALL')) out.push('capabilities not dropped');
  if ((sc.capabilities?.add ?? []).some((cap: string) => cap !== 'NET_BIND_SERVICE')) out.push('capabilities added');
  if (!['RuntimeDefault', 'Localhost'].includes(sc.seccompProfile?.type)) out.push('seccomp not RuntimeDefault');
  return out;
}

const matches = (selector: Record<string, string>, labels: Record<string, string>) =>
  Object.entries(selector).every(([k, v]) => labels[k] === v);

describe('deploy/kubernetes', () => {
  it('support_k8s_manifests_pass_the_api_schema', () => {
    expect(report.schema).toMatch(/^python3-kubernetes /);
    expect(report.problems).toEqual([]);
    // The one field newer than Debian's models: checked by the script's own rule.
    expect(report.newer.map((n) => `${n.path.replace(/^.*\/deploy\/kubernetes\//, '')} (${n.since})`)).toEqual([
      'daemonset.yaml[0].spec.template.spec.containers[0].securityContext.appArmorProfile (1.30)',
    ]);
  });

  it('deny_k8s_schema_check_finds_unknown_fields_and_wrong_types', () => {
    // The schema check itself: a typo in a field name, a number as a string, a missing required
    // field, a bad AppArmor type, each reported.
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'cj-k8s-'));
    try {
      const broken = fs
        .readFileSync(path.join(dir, 'daemonset.yaml'), 'utf8')
        .replace('readOnlyRootFilesystem: true', 'readOnlyRootFilesytem: true')
        .replace('containerPort: 8080', 'containerPort: "8080"')
        .replace(/appArmorProfile:\n(\s+)type: Unconfined/, 'appArmorProfile:\n$1type: unconfined');
      fs.writeFileSync(path.join(tmp, 'daemonset.yaml'), broken);
      fs.writeFileSync(path.join(tmp, 'service.yaml'), fs.readFileSync(path.join(dir, 'service.yaml'), 'utf8').replace('port: 80', 'prt: 80'));
      const problems = schemaCheck([path.join(tmp, 'daemonset.yaml'), path.join(tmp, 'service.yaml')]).problems.join('\n');
      expect(problems).toContain('containers[0].securityContext.readOnlyRootFilesytem: not a field of the API');
      expect(problems).toContain('containers[1].ports[0].containerPort: "8080" is not of the API\'s type');
      expect(problems).toContain('securityContext.appArmorProfile: type must be one of');
      expect(problems).toContain('(Service): Invalid value for `port`, must not be `None`');
    } finally {
      fs.rmSync(tmp, { recursive: true, force: true });
    }
  });

  it('support_k8s_kustomization_lists_every_manifest_in_one_namespace', () => {
    expect([...kustomization.resources].sort()).toEqual(yamlFiles.filter((f) => f !== 'kustomization.yaml'));
    for (const d of docs.filter((x) => !['Namespace', 'Kustomization'].includes(x.kind))) {
      expect(d.metadata.namespace, `${d.kind} ${d.metadata.name}`).toBe(namespace.metadata.name);
    }
  });

  it('support_k8s_selectors_find_the_grader_pods', () => {
    const labels = daemonSet.spec.template.metadata.labels;
    expect(matches(daemonSet.spec.selector.matchLabels, labels)).toBe(true);
    expect(matches(service.spec.selector, labels)).toBe(true);
    expect(matches(networkPolicy.spec.podSelector.matchLabels, labels)).toBe(true);
    // The Service and the policy name the front end's port, which is where serve listens.
    const port = http.ports.find((p: Doc) => p.name === 'http');
    expect(service.spec.ports.map((p: Doc) => p.targetPort)).toEqual(['http']);
    expect(networkPolicy.spec.ingress.flatMap((rule: Doc) => rule.ports.map((p: Doc) => p.port))).toEqual(['http']);
    expect(parseListen(serveConfig.listen)).toEqual({ host: '0.0.0.0', port: port.containerPort });
    // No way out of the grader pods: the policy allows no egress at all.
    expect(networkPolicy.spec.policyTypes).toEqual(['Ingress', 'Egress']);
    expect(networkPolicy.spec.egress).toEqual([]);
  });

  it('support_k8s_every_container_runs_the_image_of_this_version', () => {
    const version = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8')).version;
    for (const c of pod.containers) {
      expect(c.image, c.name).toBe(`codejail:${version}`);
      expect(c.imagePullPolicy, c.name).toBe('IfNotPresent');
    }
    // Its paths: the image's WORKDIR holds dist/, where the probes and the front end's command
    // find the CLI (dist/cli/main.js here, after the build).
    const dockerfile = fs.readFileSync(path.join(root, 'container/Dockerfile'), 'utf8');
    const finalStage = dockerfile.slice(dockerfile.lastIndexOf('\nFROM '));
    expect(finalStage).toContain(`WORKDIR ${IMAGE_ROOT}\n`);
    expect(finalStage).toContain(`COPY --from=build ${IMAGE_ROOT}/dist dist\n`);
    expect(finalStage).toMatch(/^ENTRYPOINT \["\/usr\/bin\/tini", "--", "\/opt\/codejail\/container\/entrypoint.sh"\]$/m);
    expect(http.command).toEqual(['/usr/bin/tini', '--', 'node', `${IMAGE_ROOT}/dist/cli/main.js`]);
    expect(http.args.slice(0, 1)).toEqual(['serve']);
    expect(fs.existsSync(path.join(root, path.relative(IMAGE_ROOT, http.command[3])))).toBe(true);
  });

  it('support_k8s_daemon_has_the_container_images_capability_set', () => {
    const { table, dockerRun } = documentedCapabilities();
    expect(table.length).toBeGreaterThan(0);
    expect([...dockerRun].sort()).toEqual([...table].sort());
    const sc = daemon.securityContext;
    expect(sc.capabilities.drop).toEqual(['ALL']);
    // Kubernetes names capabilities without CAP_.
    expect([...sc.capabilities.add].sort()).toEqual(table.map((c) => c.replace(/^CAP_/, '')).sort());
    // container/README.md: seccomp and AppArmor relaxed, no no_new_privs, root, not privileged.
    expect(sc.seccompProfile).toEqual({ type: 'Unconfined' });
    expect(sc.appArmorProfile).toEqual({ type: 'Unconfined' });
    expect(sc.allowPrivilegeEscalation).toBe(true);
    expect(sc.privileged).toBe(false);
    expect(sc.runAsUser).toBe(0);
    expect(sc.readOnlyRootFilesystem).toBe(true);
    expect(mountOf(daemon, '/tmp')?.volume.emptyDir).toBeDefined();
    // Not the host's namespaces (the daemon finds its runs in its own /proc).
    for (const key of ['hostPID', 'hostIPC', 'hostNetwork']) expect(pod[key], key).toBe(false);
    expect(pod.automountServiceAccountToken).toBe(false);
  });

  it('support_k8s_socket_on_a_host_path_and_run_base_writable', () => {
    const socketDir = path.dirname(daemonConfig.socket.path);
    const daemonSocket = mountOf(daemon, daemonConfig.socket.path)!;
    expect(daemonSocket.mount.mountPath).toBe(socketDir);
    expect(daemonSocket.volume.hostPath).toEqual({ path: socketDir, type: 'DirectoryOrCreate' });
    expect(daemonSocket.mount.readOnly).toBeFalsy();
    // The front end reaches the same socket through the same volume (connect() needs no write
    // access to the mount).
    const serveSocket = mountOf(http, serveConfig.socket)!;
    expect(serveConfig.socket).toBe(daemonConfig.socket.path);
    expect(serveSocket.volume.name).toBe(daemonSocket.volume.name);
    expect(serveSocket.mount.readOnly).toBe(true);
    // The run base: writable, not the image's overlay, not the host's.
    const runs = mountOf(daemon, daemonConfig.runBase)!;
    expect(runs.volume.emptyDir).toBeDefined();
    expect(runs.mount.readOnly).toBeFalsy();
    expect(mountOf(http, daemonConfig.runBase)).toBeUndefined();
  });

  it('support_k8s_config_parses_with_the_daemons_schema', () => {
    // (Parsed above with parseConfig: a bad key would have failed the file.) What the pod
    // relies on:
    expect(configDir()).toBe('/etc/codejail');
    expect(daemonConfig.socket.group).toBe('codejail');
    expect(daemonConfig.socket.mode & 0o060).toBe(0o060);
    expect(daemonConfig.slots.firstUid).toBeGreaterThanOrEqual(1000);
    // The front end runs as the socket's group: the image's codejail gid.
    const gid = /^ARG CODEJAIL_GID=(\d+)$/m.exec(fs.readFileSync(path.join(root, 'container/Dockerfile'), 'utf8'))?.[1];
    expect(http.securityContext.runAsGroup).toBe(Number(gid));
  });

  it.skipIf(process.getuid?.() !== 0)('support_k8s_serve_config_is_read_by_codejail_serve', async () => {
    // Serve's own reader: started with the ConfigMap's serve.json (its listen and socket
    // overridden by flags: a free loopback port, no daemon), it must reach "ready".
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'cj-k8s-serve-'));
    fs.chmodSync(tmp, 0o755);
    const file = path.join(tmp, 'serve.json');
    fs.writeFileSync(file, JSON.stringify(serveConfig));
    fs.chmodSync(file, 0o644);
    const child = spawn(process.execPath, [CLI_MAIN, 'serve', '--config', file, '--listen', '127.0.0.1:0', '--socket', path.join(tmp, 'none.sock')], {
      uid: SERVE_UID,
      gid: SERVE_UID,
      cwd: tmp,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const lines: Array<Record<string, unknown>> = [];
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    try {
      const ready = await new Promise<Record<string, unknown> | undefined>((resolve) => {
        followLogLines([child.stdout, child.stderr], (line) => {
          lines.push(line);
          if (line.msg === 'ready') resolve(line);
        });
        void exited.then(() => resolve(undefined));
      });
      expect(ready, lines.map((l) => JSON.stringify(l)).join('\n')).toMatchObject({ maxInFlight: serveConfig.maxInFlight });
    } finally {
      child.kill('SIGTERM');
      await exited;
      fs.rmSync(tmp, { recursive: true, force: true });
    }
  });

  it('support_k8s_probes_check_the_daemon_and_the_front_end', () => {
    const check = ['node', `${IMAGE_ROOT}/dist/cli/main.js`, 'check', '--socket', daemonConfig.socket.path];
    expect(CHECK_USAGE).toContain('--socket PATH');
    for (const probe of ['startupProbe', 'livenessProbe']) {
      expect(daemon[probe].exec.command, probe).toEqual(check);
      expect(daemon[probe].timeoutSeconds, probe).toBeGreaterThanOrEqual(10);
    }
    // Readiness: /health/, its daemon's self-check; liveness: the server answers at all.
    expect(http.readinessProbe.httpGet).toEqual({ path: '/health/', port: 'http' });
    expect(http.livenessProbe.httpGet).toEqual({ path: '/metrics', port: 'http' });
    // Readiness follows the daemon within a few probe periods.
    expect(serveConfig.selfCheckTtlMs).toBeLessThanOrEqual(30_000);
  });

  it('support_k8s_front_end_runs_unprivileged', () => {
    expect(http.securityContext.runAsUser).not.toBe(0);
    expect(http.securityContext.readOnlyRootFilesystem).toBe(true);
    expect(restrictedViolations(http)).toEqual([]);
  });

  it('support_k8s_resources_add_up', () => {
    for (const c of pod.containers) {
      expect(c.resources.requests.cpu, c.name).toBeDefined();
      expect(c.resources.requests.memory, c.name).toBeDefined();
      expect(c.resources.limits.memory, c.name).toBeDefined();
    }
    // Every slot holding the most a caller may ask (the ceilings: address space and run disk,
    // a tmpfs charged to the container's memory), plus the daemon.
    const { VMEM, DISK } = daemonConfig.ceilings;
    expect(VMEM).toBeGreaterThan(0);
    expect(quantity(daemon.resources.limits.memory)).toBeGreaterThanOrEqual(daemonConfig.slots.count * (VMEM + DISK) + 512 * 2 ** 20);
    // The front end: maxInFlight request bodies at once, plus Node.
    const bodies = serveConfig.maxInFlight * (serveConfig.maxBodyBytes ?? DEFAULT_HTTP_LIMITS.maxBodyBytes);
    expect(quantity(http.resources.limits.memory)).toBeGreaterThanOrEqual(bodies + 128 * 2 ** 20);
  });

  it('support_k8s_shutdown_drains_the_front_end_before_the_daemon', () => {
    const sleep = (c: Doc) => {
      const command: string[] = c.lifecycle.preStop.exec.command;
      expect(command[0]).toBe('sleep');
      return Number(command[1]);
    };
    // serve's stop: a drain of drainMs at most, then its close(), where requests in flight get
    // 10 s (src/http/server.ts).
    const serveDrain = (serveConfig.drainMs ?? DEFAULT_HTTP_LIMITS.drainMs) / 1000;
    const serveGrace = 10;
    expect(sleep(daemon)).toBeGreaterThanOrEqual(sleep(http) + serveDrain + serveGrace);
    expect(pod.terminationGracePeriodSeconds).toBeGreaterThan(sleep(daemon) + daemonConfig.shutdownGraceMs / 1000);
  });

  it('support_k8s_namespace_is_privileged_for_what_the_daemon_needs', () => {
    const labels = namespace.metadata.labels;
    expect(labels['pod-security.kubernetes.io/enforce']).toBe('privileged');
    // Exactly these keep the pod out of `baseline` (deploy/kubernetes/README.md says why each).
    expect(baselineViolations(pod).sort()).toEqual(
      ['codejaild: AppArmor Unconfined', 'codejaild: capability SYS_ADMIN', 'codejaild: capability SYS_RESOURCE', 'codejaild: seccomp Unconfined', 'hostPath volume socket'].sort(),
    );
  });
});
