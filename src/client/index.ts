// The package's main export: the Client and, like the original CodeJail module, functions that
// share one default client.
import type { Limits } from '../protocol/index.js';
import { Client } from './client.js';
import type { JailCodeResult } from './client.js';
import type { JailCodeOptions } from './request.js';
import type { SafeExecOptions } from './safe_exec.js';

export { Client } from './client.js';
export type { ClientOptions, JailCodeResult } from './client.js';
export { CodejailError } from './errors.js';
export type { ClientErrorCode } from './errors.js';
export type { ExtraFile } from './files.js';
export type { JailCodeOptions, SafeExecCall } from './request.js';
export type { UnsafeCommand } from './unsafe.js';
export { SafeExecError } from './safe_exec.js';
export { DEFAULT_RESULT_BOUNDS, type ResultBounds } from './globals_codec.js';
export { PythonFloat } from './python_values.js';
export type { SafeExecFailure, SafeExecOptions } from './safe_exec.js';
export { DEFAULT_LIMITS, DEFAULT_SOCKET_PATH, LIMIT_NAMES, ERROR_CODES } from '../protocol/index.js';
export type { CheckResult, ErrorCode, LimitName, Limits, Stages, StatusResult, Usage } from '../protocol/index.js';

let defaultClient: Client | undefined;

/** Created on first use so that $CODEJAIL_SOCKET is read when the first call is made. */
function getDefaultClient(): Client {
  defaultClient ??= new Client();
  return defaultClient;
}

export function jailCode(command: string, options?: JailCodeOptions): Promise<JailCodeResult> {
  return getDefaultClient().jailCode(command, options);
}

export function setLimit(name: string, value: number): void {
  getDefaultClient().setLimit(name, value);
}

export function overrideLimit(name: string, value: number, context: string): void {
  getDefaultClient().overrideLimit(name, value, context);
}

export function getEffectiveLimits(context?: string): Limits {
  return getDefaultClient().getEffectiveLimits(context);
}

export function safeExec(
  code: string,
  globals?: Record<string, unknown>,
  options?: SafeExecOptions,
): Promise<Record<string, unknown>> {
  return getDefaultClient().safeExec(code, globals, options);
}

export function isConfigured(command: string): Promise<boolean> {
  return getDefaultClient().isConfigured(command);
}
