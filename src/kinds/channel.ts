// The warm template channel: the messages the daemon, a warm template (python/warm_template.py,
// or any kind's template) and a template's forked children exchange over one SOCK_SEQPACKET
// socket, each starting with a 4-byte kind. Written once here; test/kinds/channel.test.ts parses
// the template's Python and the native sources and fails when they say otherwise.

/** Who sends a message: the daemon, the template, or a run's child (cj_warm_start, in C). */
export type ChannelSender = 'daemon' | 'template' | 'child';

export interface ChannelMessage {
  /** The 4 bytes the message starts with. */
  readonly kind: string;
  readonly from: ChannelSender;
  /** 'json': the kind, then a JSON object; 'binary': a fixed layout of `bytes` bytes in all; 'bare': the kind alone. */
  readonly body: 'json' | 'binary' | 'bare';
  /** The whole message, for a binary one (RUN1: its header, the plan and the tail follow). */
  readonly bytes?: number;
}

/**
 * The messages. RUN1 is a header (kind, token, plan length, tail length: native/warm_send.cc)
 * then the flattened plan and a JSON tail, with the run's fds attached; OKAY and FAIL are a
 * child's report (kind, token, two int32: pid, or step and errno; native/warm_apply.cc), its
 * pidfd attached to an OKAY; EXIT is the template's report of a reaped child (kind, token, the
 * wait status, the struct rusage wait4() wrote).
 */
export const CHANNEL = {
  run: { kind: 'RUN1', from: 'daemon', body: 'binary', bytes: 16 },
  /** A held run (started ahead of its request): RUN1's layout; its tail says only `result`. */
  hold: { kind: 'HLD1', from: 'daemon', body: 'binary', bytes: 16 },
  drain: { kind: 'DRN1', from: 'daemon', body: 'bare' },
  ping: { kind: 'PNG1', from: 'daemon', body: 'bare' },
  ready: { kind: 'REDY', from: 'template', body: 'json' },
  pong: { kind: 'PONG', from: 'template', body: 'json' },
  warn: { kind: 'WARN', from: 'template', body: 'json' },
  exit: { kind: 'EXIT', from: 'template', body: 'binary', bytes: 156 },
  okay: { kind: 'OKAY', from: 'child', body: 'binary', bytes: 16 },
  fail: { kind: 'FAIL', from: 'child', body: 'binary', bytes: 16 },
} as const satisfies Record<string, ChannelMessage>;

/** Where the fields of a binary message sit (little-endian, as every supported host is). */
export const CHANNEL_LAYOUT = {
  /** Every message but the bare ones: the kind's token (a run's number) follows the kind. */
  tokenAt: 4,
  /** OKAY: the child's pid; FAIL: the step (a cj_step) that failed. */
  reportValueAt: 8,
  /** FAIL: errno. */
  reportErrnoAt: 12,
  /** EXIT: the wait status (int32). */
  exitStatusAt: 8,
  /**
   * EXIT: struct rusage of 64-bit Linux (144 bytes): ru_utime and ru_stime as two 64-bit fields
   * each, then ru_maxrss, a 64-bit long.
   */
  exitRusageAt: 12,
  rusageBytes: 144,
} as const;

/** The 4-byte kind a message starts with, as the daemon sends it. */
export function channelKind(message: keyof typeof CHANNEL): Buffer {
  return Buffer.from(CHANNEL[message].kind, 'latin1');
}

/**
 * A held run's go record, which the daemon writes on the run's stdin pipe when its request comes
 * (native/warm_apply.cc: cj_warm_await_go reads it): the kind, the tail's length (uint32), then
 * the tail (JSON: mode, script, argv, env). Not a channel message: the pipe is the run's own.
 */
export const GO_RECORD = { kind: 'GO01', headBytes: 8, tailLengthAt: 4 } as const;
