// The kernels the VM suites boot (scripts/vm/kernels.sh): each suite runs once per kernel, and
// each run checks that the guest really booted the kernel its name promises. What the suites need
// of the host (root, qemu, systemd) and when they run or skip is decided here, once for both.
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const cache = process.env.CODEJAIL_VM_CACHE ?? '/var/cache/codejail-vm';

export interface VmKernel {
  /** CODEJAIL_VM_KERNEL's value. */
  name: 'bookworm' | 'trixie';
  /** What the guest's `uname -r` must match. */
  release: RegExp;
  /** Where scripts/vm/build.sh caches this kernel. */
  cache: string;
  /** The feature set test/apparmor checks the profiles against offline (captured in this VM). */
  featuresFile: string;
}

const ALL_KERNELS: VmKernel[] = [
  { name: 'bookworm', release: /^6\.1\.\d+-\d+-amd64$/, cache, featuresFile: path.join(root, 'test/apparmor/features-debian12-6.1') },
  { name: 'trixie', release: /^6\.12\.\d+\+deb13-amd64$/, cache: path.join(cache, 'trixie'), featuresFile: path.join(root, 'test/apparmor/features-debian13-6.12') },
];

/**
 * The kernels the suites boot: all of them, or those CODEJAIL_VM_KERNELS names (comma-separated,
 * for working on one; CI leaves it unset). An unknown name is an error, not a silent skip.
 */
export const VM_KERNELS: VmKernel[] = selectKernels(process.env.CODEJAIL_VM_KERNELS);

function selectKernels(names: string | undefined): VmKernel[] {
  if (!names) return ALL_KERNELS;
  return names.split(',').map((name) => {
    const kernel = ALL_KERNELS.find((k) => k.name === name.trim());
    if (!kernel) throw new Error(`CODEJAIL_VM_KERNELS: "${name}" is not one of ${ALL_KERNELS.map((k) => k.name).join(', ')}`);
    return kernel;
  });
}

/** The cached kernel's release (from its vmlinuz), for a suite's title; undefined before build.sh ran. */
export function cachedRelease(kernel: VmKernel): string | undefined {
  try {
    return /vmlinuz-(.+)$/.exec(fs.readlinkSync(path.join(kernel.cache, 'vmlinuz')))?.[1];
  } catch {
    return undefined;
  }
}

/** "Debian 13 trixie, kernel 6.12.118+deb13-amd64": what a suite's title says it boots. */
export function kernelTitle(kernel: VmKernel): string {
  const release = kernel.name === 'bookworm' ? 'Debian 12 bookworm' : 'Debian 13 trixie';
  return `${release}, kernel ${cachedRelease(kernel) ?? '(not built yet)'}`;
}

export const hasQemu = spawnSync('sh', ['-c', 'command -v qemu-system-x86_64'], { stdio: 'ignore' }).status === 0;
export const hasSystemd = fs.existsSync('/lib/systemd/systemd');
/** CODEJAIL_VM_TESTS=1 (CI): a VM suite that cannot run is then a failure, not a skip. */
export const asked = process.env.CODEJAIL_VM_TESTS === '1';

/**
 * Why a suite on this kernel is skipped, or undefined when it runs: as root with qemu, and either
 * asked for or with this kernel's cache already built (scripts/vm/build.sh ran here once).
 */
export function skipReason(kernel: VmKernel, needsSystemd = false): string | undefined {
  if (process.getuid?.() !== 0) return 'not root';
  if (asked) return undefined;
  if (!hasQemu) return 'qemu-system-x86_64 is not installed';
  if (needsSystemd && !hasSystemd) return 'systemd is not installed (/lib/systemd/systemd)';
  const built = fs.existsSync(path.join(kernel.cache, 'vmlinuz')) && fs.existsSync(path.join(kernel.cache, 'initramfs.cpio.gz'));
  if (!built) return `no VM cache for ${kernel.name} at ${kernel.cache} (run CODEJAIL_VM_KERNEL=${kernel.name} scripts/vm/build.sh, or set CODEJAIL_VM_TESTS=1)`;
  return undefined;
}

/**
 * Boots the VM on `kernel` (scripts/vm/run.sh's own timeout bounds it) and collects its console.
 * Asynchronously: a worker blocked for minutes would miss vitest's own RPC deadlines.
 */
export function runVm(kernel: VmKernel, args: string[]): Promise<{ status: number | null; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(path.join(root, 'scripts/vm/run.sh'), args, {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, CODEJAIL_VM_KERNEL: kernel.name, CODEJAIL_VM_TIMEOUT: process.env.CODEJAIL_VM_TIMEOUT ?? '900' },
    });
    const chunks: Buffer[] = [];
    child.stdout.on('data', (c: Buffer) => chunks.push(c));
    child.stderr.on('data', (c: Buffer) => chunks.push(c));
    child.on('error', reject);
    child.on('close', (status) => resolve({ status, output: Buffer.concat(chunks).toString('utf8') }));
  });
}
