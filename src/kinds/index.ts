// The kinds of interpreter a command may be: the one list of them. A config's `kind` names one;
// discovery, warm templates, safe_exec and the self-check ask the kind, never its name.
//
// Adding a kind: its module here (a Kind, see kind.ts) and one line in KINDS; a kind with a warm
// template also has its template script (which speaks src/kinds/channel.ts).
import { binary } from './binary.js';
import type { Kind } from './kind.js';
import { python } from './python.js';

export type { Discovery, InterpreterCommand, Kind, WarmTemplate } from './kind.js';

/** Every kind; the first is a command's kind when the config names none. */
export const KINDS = [python, binary] as const;

export type KindName = (typeof KINDS)[number]['name'];
export const KIND_NAMES = KINDS.map((kind) => kind.name) as [KindName, ...KindName[]];

/** The kind named `name` (a name the config schema has checked). */
export function kindNamed(name: KindName): Kind<KindName> {
  const kind = KINDS.find((k) => k.name === name);
  if (!kind) throw new Error(`no kind named ${name}`);
  return kind;
}
