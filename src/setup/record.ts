// What `codejail setup` created on this host, kept in a small file beside the configuration
// (setup-record.json), so that `codejail setup --uninstall` removes what setup made and nothing
// an operator made with the same name. Written after each thing created: a setup that fails
// half-way still records what it did. Things setup only found are not recorded.
import { mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';

export const RECORD_FILE = 'setup-record.json';

/** One thing setup created. Accounts carry their id: a same-named account made later is not ours. */
export type Created =
  | { kind: 'user' | 'group'; name: string; id: number }
  | { kind: 'apparmor'; path: string; profile: boolean }
  | { kind: 'unit'; path: string }
  /** A man page or the bash completion (src/setup/operator_files.ts). */
  | { kind: 'file'; path: string }
  | { kind: 'dir'; path: string; role: 'runBase' | 'socketDir' | 'configDir' };

export class SetupRecord {
  private constructor(
    readonly file: string,
    private items: Created[],
  ) {}

  /** The record in `configDir`, or an empty one. A file that is not a record is refused, not overwritten. */
  static load(configDir: string): SetupRecord {
    const file = path.join(configDir, RECORD_FILE);
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return new SetupRecord(file, []);
      throw err;
    }
    const parsed = JSON.parse(text) as { created?: unknown };
    if (!Array.isArray(parsed.created)) throw new Error(`${file} is not a codejail setup record (no "created" list)`);
    return new SetupRecord(file, parsed.created as Created[]);
  }

  get created(): readonly Created[] {
    return this.items;
  }

  has(item: Created): boolean {
    return this.items.some((known) => sameThing(known, item));
  }

  add(item: Created): void {
    if (this.has(item)) return;
    this.items.push(item);
    this.save();
  }

  remove(item: Created): void {
    this.items = this.items.filter((known) => !sameThing(known, item));
    this.save();
  }

  /** Writes the record (temporary file + rename); an empty record is no file at all. */
  private save(): void {
    if (this.items.length === 0) {
      rmSync(this.file, { force: true });
      return;
    }
    mkdirSync(path.dirname(this.file), { recursive: true, mode: 0o755 });
    const temp = `${this.file}.tmp-${process.pid}`;
    writeFileSync(temp, `${JSON.stringify({ created: this.items }, null, 2)}\n`, { mode: 0o644 });
    renameSync(temp, this.file);
  }
}

function sameThing(a: Created, b: Created): boolean {
  if (a.kind !== b.kind) return false;
  if ('name' in a && 'name' in b) return a.name === b.name;
  return 'path' in a && 'path' in b && a.path === b.path;
}
