// What the socket server is given: where to listen, its caps, and the daemon's parts that answer
// requests (runner, status, metrics, check).
import type { CheckResult, StatusResult } from '../../protocol/index.js';
import type { AllowList, Caller } from '../auth.js';
import type { Logger } from '../../log.js';
import type { Metrics } from '../metrics.js';
import type { Runner } from '../runner.js';
import type { CommandKind } from '../safe_exec.js';

/** The connections section of the config, its byte defaults resolved (config.ts). */
export interface ConnectionLimits {
  max: number;
  perUid: number;
  idleTimeoutMs: number;
  frameTimeoutMs: number;
  maxBufferedBytes: number;
  totalBufferedBytes: number;
  perUidBufferedBytes: number;
}

export interface ServerOptions {
  socketPath: string;
  /** Group allowed to connect (socket is root:group, `mode`); missing group: root-only 0600. */
  group: string;
  mode: number;
  maxFrameBytes: number;
  connections: ConnectionLimits;
  runner: Runner;
  /** Each configured command's kind: safe_exec runs only a python one. */
  commandKinds: ReadonlyMap<string, CommandKind>;
  status: () => StatusResult;
  log: Logger;
  /**
   * A listening socket inherited from systemd (socket activation): served as is. Its path, owner
   * and mode are the .socket unit's business, so the server neither binds, chmods nor unlinks.
   */
  listenFd?: number;
  /** SO_PEERCRED of a connected socket's fd (the addon's peerCred). */
  peerCred: (fd: number) => Caller;
  /** The allow list in force; a function because SIGHUP may replace it. */
  allowList: () => AllowList;
  metrics: Metrics;
  /** Renders the Prometheus text (the 'metrics' request). */
  renderMetrics: () => string;
  /** Runs the self-check again (the 'check' request). */
  check: () => Promise<CheckResult>;
}
