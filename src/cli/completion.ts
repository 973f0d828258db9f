// Bash completion for `codejail`, made from the --help texts (src/cli/usage.ts): the subcommands,
// and each one's options as its usage names them, so completion offers what --help documents.
// `codejail setup` installs it (src/setup/operator_files.ts).
import { SUBCOMMAND_USAGES } from './usage.js';

/** The long and short options a usage text names (--config, -c ...), in order, once each. */
export function usageOptions(usage: string): string[] {
  const found = usage.match(/(?<![\w-])--?[A-Za-z][\w-]*/g) ?? [];
  return [...new Set([...found, '--help'])];
}

export function bashCompletion(): string {
  const names = Object.keys(SUBCOMMAND_USAGES);
  const cases = Object.entries(SUBCOMMAND_USAGES)
    .map(([name, usage]) => `    ${name}) options='${usageOptions(usage).join(' ')}' ;;`)
    .join('\n');
  return `# bash completion for codejail; generated from its --help texts by \`codejail setup\`.
_codejail() {
  local cur=\${COMP_WORDS[COMP_CWORD]} prev=\${COMP_WORDS[COMP_CWORD-1]} options
  if [ "$COMP_CWORD" -eq 1 ]; then
    COMPREPLY=($(compgen -W '${names.join(' ')} --help --version' -- "$cur"))
    return
  fi
  case $prev in
    --config|--socket|--file|--stdin|--python) COMPREPLY=($(compgen -f -- "$cur")); return ;;
  esac
  case \${COMP_WORDS[1]} in
${cases}
    *) options='--help' ;;
  esac
  if [[ $cur == -* ]]; then
    COMPREPLY=($(compgen -W "$options" -- "$cur"))
  else
    COMPREPLY=($(compgen -f -- "$cur"))
  fi
}
complete -F _codejail codejail
`;
}
