// The tree's floors: each part of src/ imports only from its own floor and the floors below it,
// and no file reaches itself through its imports. FLOORS is the one written order (README's
// "Development" section walks it). Type-only imports count for the floors and for circles alike:
// a type that points up is how the last circles came back (z.lazy in the config schema,
// LayerConfig in layer.ts), and a type-only circle inside a folder is a type living in the wrong
// file (the last three were moved one file down: PlanInput, CgroupTree, SlotIdentity, BenchRunner).
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';

/** From the kernel up. A name is a folder of src/ or a file at its top (without .ts). */
export const FLOORS: readonly (readonly string[])[] = [
  ['package', 'config_error', 'accounts', 'log'],
  ['native'],
  ['protocol'],
  ['kinds'],
  ['config'],
  ['run'],
  ['layers'],
  ['daemon'],
  ['setup'],
  ['client'],
  ['http'],
  ['cli'],
];

/**
 * Arrows that still point up, each waiting for named work; an entry that no longer exists fails
 * the test too, so the list only shrinks.
 */
const PENDING_ARROWS_UP: readonly string[] = [];

const root = path.resolve(__dirname, '../..');
const src = path.join(root, 'src');

interface Edge {
  from: string;
  to: string;
  typeOnly: boolean;
}

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) return sourceFiles(full);
    return entry.name.endsWith('.ts') && !entry.name.endsWith('.d.ts') ? [full] : [];
  });
}

/** Every relative import of `file`: static, re-exports and import() alike. */
function importsOf(file: string): Edge[] {
  const source = ts.createSourceFile(file, readFileSync(file, 'utf8'), ts.ScriptTarget.ES2022, true);
  const edges: Edge[] = [];
  const add = (specifier: ts.Expression | undefined, typeOnly: boolean) => {
    if (!specifier || !ts.isStringLiteral(specifier) || !specifier.text.startsWith('.')) return;
    const to = path.resolve(path.dirname(file), specifier.text).replace(/\.js$/, '.ts');
    edges.push({ from: path.relative(root, file), to: path.relative(root, to), typeOnly });
  };
  const visit = (node: ts.Node) => {
    if (ts.isImportDeclaration(node)) {
      const clause = node.importClause;
      const named = clause?.namedBindings && ts.isNamedImports(clause.namedBindings) ? clause.namedBindings.elements : undefined;
      const typeOnly = !!clause && (clause.isTypeOnly || (!clause.name && !!named && named.length > 0 && named.every((e) => e.isTypeOnly)));
      add(node.moduleSpecifier, typeOnly);
    } else if (ts.isExportDeclaration(node)) {
      const named = node.exportClause && ts.isNamedExports(node.exportClause) ? node.exportClause.elements : undefined;
      add(node.moduleSpecifier, node.isTypeOnly || (!!named && named.length > 0 && named.every((e) => e.isTypeOnly)));
    } else if (ts.isCallExpression(node) && node.expression.kind === ts.SyntaxKind.ImportKeyword) {
      add(node.arguments[0], false);
    }
    ts.forEachChild(node, visit);
  };
  visit(source);
  return edges;
}

/** The floor of a repository path beneath src/. */
function floorOf(file: string): number {
  const [first] = path.relative('src', file).split(path.sep);
  const name = first!.replace(/\.ts$/, '');
  const floor = FLOORS.findIndex((names) => names.includes(name));
  if (floor < 0) throw new Error(`${name} (src/${first}) is on no floor: add it to FLOORS in test/tree/floors.test.ts and to README`);
  return floor;
}

/** The circles among `edges`: strongly connected components of more than one file, or a file importing itself. */
function circles(edges: Edge[]): string[][] {
  const next = new Map<string, string[]>();
  for (const { from, to } of edges) next.set(from, [...(next.get(from) ?? []), to]);
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const found: string[][] = [];
  let counter = 0;
  const connect = (v: string) => {
    index.set(v, counter);
    low.set(v, counter++);
    stack.push(v);
    onStack.add(v);
    for (const w of next.get(v) ?? []) {
      if (!index.has(w)) {
        connect(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) {
        low.set(v, Math.min(low.get(v)!, index.get(w)!));
      }
    }
    if (low.get(v) === index.get(v)) {
      const component: string[] = [];
      let w: string;
      do {
        w = stack.pop()!;
        onStack.delete(w);
        component.push(w);
      } while (w !== v);
      if (component.length > 1 || (next.get(v) ?? []).includes(v)) found.push(component.sort());
    }
  };
  for (const v of next.keys()) if (!index.has(v)) connect(v);
  return found;
}

const edges = sourceFiles(src).flatMap(importsOf);

describe('the floors of src/', () => {
  it('every file of src/ is on a floor', () => {
    for (const file of sourceFiles(src)) expect(() => floorOf(path.relative(root, file))).not.toThrow();
  });

  it('no import points to a floor above its own (type-only imports included)', () => {
    const up = edges
      .filter((e) => floorOf(e.to) > floorOf(e.from))
      .map((e) => `${e.from} -> ${e.to}${e.typeOnly ? ' (type)' : ''}`)
      .sort();
    expect(up).toEqual([...PENDING_ARROWS_UP].sort());
  });

  it('no import circle between files, type-only imports included (an arrow still pending aside)', () => {
    const pending = (e: Edge) => PENDING_ARROWS_UP.includes(`${e.from} -> ${e.to}${e.typeOnly ? ' (type)' : ''}`);
    expect(circles(edges.filter((e) => !pending(e)))).toEqual([]);
  });

  it('sees an arrow up and a circle when there is one (the checks can fail)', () => {
    const planted: Edge[] = [
      { from: 'src/protocol/schema.ts', to: 'src/daemon/config.ts', typeOnly: true },
      { from: 'src/daemon/config.ts', to: 'src/protocol/schema.ts', typeOnly: false },
    ];
    expect(planted.filter((e) => floorOf(e.to) > floorOf(e.from))).toHaveLength(1);
    expect(circles(planted)).toEqual([['src/daemon/config.ts', 'src/protocol/schema.ts']]);
  });
});
