import { checkResult, DEFAULT_MAX_FRAME_BYTES, DEFAULT_SOCKET_PATH, describeIssues, jailCodeResult, metricsResult, statusResult } from '../protocol/index.js';
import type { CheckResult, JailCodeResult as WireJailCodeResult, Limits, StatusResult } from '../protocol/index.js';
import type { z } from 'zod';
import { Connection } from './connection.js';
import { CodejailError } from './errors.js';
import { LimitSettings } from './limits.js';
import { buildJailCodeFields, buildSafeExecFields } from './request.js';
import type { JailCodeOptions, SafeExecCall } from './request.js';
import { harnessJailCodeOptions, safeExec as safeExecWith, type SafeExecOptions } from './safe_exec.js';
import { UnsafeRunner, type UnsafeCommand } from './unsafe.js';


export interface ClientOptions {
  /** The daemon's socket. Default: $CODEJAIL_SOCKET, else /run/codejail/codejail.sock. */
  socketPath?: string;
  /** Largest frame sent or accepted; must not exceed the daemon's. */
  maxFrameBytes?: number;
  /**
   * Run code directly, without a daemon or root and WITHOUT a sandbox: rlimits only, as this
   * user (NPROC then counts all of this user's processes). For development; warns once on stderr.
   */
  unsafe?: boolean;
  /** Unsafe mode's commands. Default: python = /usr/bin/python3 -E -B. */
  unsafeCommands?: Record<string, UnsafeCommand>;
}

/** What a run produced, with its output as Buffers. */
export type JailCodeResult = Omit<WireJailCodeResult, 'stdout' | 'stderr' | 'result'> & {
  stdout: Buffer;
  stderr: Buffer;
  /** What the run wrote to fd 3 (only with `resultChannel`). */
  result?: Buffer;
};

/** A reply's result checked against its schema: a daemon we cannot understand is not trusted. */
function parseReply<S extends z.ZodTypeAny>(schema: S, raw: unknown, op: string): z.output<S> {
  const parsed = schema.safeParse(raw);
  if (!parsed.success) {
    throw new CodejailError('bad_reply', `the codejail daemon sent a malformed ${op} result: ${describeIssues(parsed.error)}`);
  }
  return parsed.data;
}

/** A run's reply (jail_code's or safe_exec's), checked, its bytes as Buffers. */
function runResult(raw: unknown, op: string): JailCodeResult {
  const { result, ...rest } = parseReply(jailCodeResult, raw, op);
  const reply: JailCodeResult = { ...rest, stdout: asBuffer(rest.stdout), stderr: asBuffer(rest.stderr) };
  if (result !== undefined) reply.result = asBuffer(result);
  return reply;
}

/** A view, not a copy: the reply frame belongs to nobody else. */
function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/**
 * A connection to codejaild plus this client's limit settings. The connection is opened on the
 * first request and reopened on the next request after it drops; concurrent requests share it.
 */
export class Client {
  readonly socketPath: string;
  private readonly maxFrameBytes: number;
  private readonly limitSettings = new LimitSettings();
  private connection: Connection | null = null;
  /** Set in unsafe mode: runs happen here instead of in the daemon. */
  private readonly unsafe: UnsafeRunner | undefined;

  constructor(options: ClientOptions = {}) {
    this.socketPath = options.socketPath ?? process.env.CODEJAIL_SOCKET ?? DEFAULT_SOCKET_PATH;
    this.maxFrameBytes = options.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES;
    if (options.unsafe) this.unsafe = new UnsafeRunner(options.unsafeCommands);
    else if (options.unsafeCommands) throw new CodejailError('bad_request', 'unsafeCommands needs unsafe: true');
  }

  /** Sets this client's default for a limit (the original's set_limit). */
  setLimit(name: string, value: number): void {
    this.limitSettings.set(name, value);
  }

  /** Sets a limit used only by calls passing `limitOverridesContext: context` (override_limit). */
  overrideLimit(name: string, value: number, context: string): void {
    this.limitSettings.override(name, value, context);
  }

  /** The limits a call with this context (and no explicit limits) would run under. */
  getEffectiveLimits(context?: string): Limits {
    return this.limitSettings.effective(context);
  }

  /** Runs code with `command` (e.g. 'python') in a sandbox and returns its output and status. */
  async jailCode(command: string, options: JailCodeOptions = {}): Promise<JailCodeResult> {
    const fields = await buildJailCodeFields(command, options, this.limitSettings);
    const raw = this.unsafe ? await this.unsafe.run(fields) : await this.call('jail_code', fields);
    return runResult(raw, 'jail_code');
  }

  /**
   * Runs Python `code` with `exec(code, globals)` in a sandbox (the original's safe_exec). Resolves
   * with the JSON-safe globals afterwards and assigns them into `globals`; rejects with
   * SafeExecError (stdout, stderr, status, timedOut, truncated; the original's message, which holds
   * the traceback) and leaves `globals` as it was.
   */
  safeExec(code: string, globals: Record<string, unknown> = {}, options: SafeExecOptions = {}): Promise<Record<string, unknown>> {
    return safeExecWith(this, code, globals, options);
  }

  /**
   * safeExec's transport: a safe_exec request, the daemon running its own harness. In unsafe mode
   * (no daemon) the harness goes as jailCode's code instead.
   */
  async sendSafeExec(call: SafeExecCall): Promise<JailCodeResult> {
    if (this.unsafe) return this.jailCode(call.command, harnessJailCodeOptions(call));
    const fields = await buildSafeExecFields(call, this.limitSettings);
    return runResult(await this.call('safe_exec', fields), 'safe_exec');
  }

  /** Whether the daemon runs `command` (the original's is_configured). */
  async isConfigured(command: string): Promise<boolean> {
    if (this.unsafe) return this.unsafe.has(command);
    return (await this.status()).commands.includes(command);
  }

  /** The daemon's layers, slots and queue. */
  async status(): Promise<StatusResult> {
    return parseReply(statusResult, await this.call('status', {}), 'status');
  }

  /** The daemon's counters and gauges in the Prometheus text format. */
  async metrics(): Promise<string> {
    return parseReply(metricsResult, await this.call('metrics', {}), 'metrics').text;
  }

  /** Has the daemon run its self-check again, through real sandboxes, and report each probe. */
  async check(): Promise<CheckResult> {
    return parseReply(checkResult, await this.call('check', {}), 'check');
  }

  /**
   * Closes the connection. Requests in flight reject with code 'closed' (the daemon kills their
   * runs). The client stays usable: a later call opens a new connection.
   */
  async close(): Promise<void> {
    this.unsafe?.close();
    const connection = this.connection;
    this.connection = null;
    await connection?.close();
  }

  private call(op: string, fields: Record<string, unknown>): Promise<unknown> {
    if (this.unsafe) {
      return Promise.reject(new CodejailError('unavailable', `${op}: this client is in unsafe mode and has no daemon to ask`));
    }
    if (!this.connection?.usable) this.connection = new Connection(this.socketPath, this.maxFrameBytes);
    return this.connection.request(op, fields);
  }
}
