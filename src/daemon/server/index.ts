// The socket server's one entry: listener.ts (binding, accepting, caps, budget, revocation),
// connection.ts (one connection: frames, timeouts, backpressure), requests.ts (what each op does,
// per-run accounting), throttle.ts (refusal lines at a bounded rate).
export { DaemonServer } from './listener.js';
export type { ConnectionLimits, ServerOptions } from './options.js';
