// Shared by test/apparmor and test/vm: where apparmor_parser is, and what a kernel feature file
// (aa-features-abi -x, the form apparmor_parser's --features-file and --kernel-features read) holds.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';

export function findParser(): string | undefined {
  for (const candidate of ['/usr/sbin/apparmor_parser', '/sbin/apparmor_parser']) {
    if (fs.existsSync(candidate)) return candidate;
  }
  try {
    return execFileSync('sh', ['-c', 'command -v apparmor_parser'], { encoding: 'utf8' }).trim() || undefined;
  } catch {
    return undefined;
  }
}

/**
 * Every feature directory a feature file names, as paths ("domain", "domain/stack",
 * "network_v8/af_mask"...): a name followed by a braced block is a directory (securityfs's
 * features/ tree); the bare words inside a block are a file's values and are left out.
 */
export function featureDirectories(text: string): Set<string> {
  const tokens = text.match(/[{}]|[^\s{}]+/g) ?? [];
  const found = new Set<string>();
  const stack: string[] = [];
  for (let i = 0; i < tokens.length; i++) {
    const token = tokens[i]!;
    if (token === '}') {
      stack.pop();
    } else if (token === '{') {
      throw new Error(`feature file: a block without a name at token ${i}`);
    } else if (tokens[i + 1] === '{') {
      stack.push(token);
      found.add(stack.join('/'));
      i++;
    }
  }
  if (stack.length) throw new Error(`feature file: ${stack.join('/')} is not closed`);
  return found;
}
