// What one kind of interpreter is to the daemon: how to ask it what it reads at start, the warm
// template its runs fork from, the harness safe_exec runs on it. index.ts lists the kinds; a
// command's `kind` in the config names one.

/** What a kind needs of a configured command (a CommandConfig is one). */
export interface InterpreterCommand {
  path: string;
  args: readonly string[];
  env: Readonly<Record<string, string>>;
  preload?: readonly string[];
}

/** What an interpreter said it reads at start. */
export interface Discovery {
  /** Files and directories to grant read-only; the caller drops any a sandbox must never read. */
  read: string[];
  /**
   * A directory dedicated to this interpreter, granted whole, and what it is ('virtualenv'): it
   * must be where runs can reach, or no run could start.
   */
  dedicated?: { path: string; what: string };
}

export interface WarmTemplate {
  /** Its program, beneath the package root: read once at daemon start (src/run/install_files.ts). */
  readonly script: string;
  /**
   * The template's argv: the command's interpreter and flags, then a bootstrap that reads the
   * program, the harness and codejail_warm.so from stdin (src/run/template_boot.ts sends them).
   */
  argv(command: InterpreterCommand): string[];
}

export interface Kind<N extends string = string> {
  readonly name: N;
  /**
   * Runs the interpreter unconfined (as root, with the command's arguments) to learn what it
   * reads at start; throws ConfigError naming `where`. None: only what the config grants.
   */
  discover?(command: InterpreterCommand, where: string): Discovery;
  /** Its runs fork from a warm template (unless the command says `warm: false`). */
  readonly template?: WarmTemplate;
  /** safe_exec's harness in this kind's language, beneath the package root; none: refused. */
  readonly harness?: string;
  /** The self-check's probes (src/layers/probes.ts) are written in this kind's language. */
  readonly selfCheck?: boolean;
}

/** Checks a kind's shape where it is written, keeping its literal name. */
export function defineKind<N extends string>(kind: Kind<N>): Kind<N> {
  return kind;
}
