// `codejail setup`: creates what the daemon needs on this host (setupHost()), or with
// --uninstall removes it again (uninstallHost()). Both are imported only here so that the other
// subcommands never load daemon code.
import { parseArgs } from 'node:util';
import { UsageError, withUsageErrors } from './args.js';
import type { OperatorTexts } from '../setup/operator_files.js';

export const SETUP_USAGE = `usage: codejail setup [--config FILE] [--systemd [--http]]
       codejail setup --uninstall [--purge] [--config FILE]
Creates the codejail group, the slot users and the daemon's directories as the configuration
(default /etc/codejail/config.json, else the built-in defaults) describes, and installs the man
pages codejail(1), codejaild(8), codejail-config(5) (in /usr/local/share/man) and the bash
completion of codejail. Needs root; safe to run again.

  --systemd   also install codejaild.socket and codejaild.service in /etc/systemd/system
              (ExecStart= pointing at this installation, the socket as configured), then
              run systemctl daemon-reload and enable --now codejaild.socket when systemd is
              the running init
  --http      with --systemd: also create the user codejail-http (in the socket's group) and
              install, enable and start codejail-http.service (\`codejail serve\`, the HTTP API)
  --uninstall removes what setup created (recorded in /etc/codejail/setup-record.json, or, for an
              older install, named exactly as setup names it and unused): its users and
              groups, AppArmor profiles, systemd units, the run base and the socket's
              directory. Refuses while a daemon of this configuration runs.
  --purge     with --uninstall: also remove /etc/codejail (the configuration)`;

/**
 * `codejail setup`. The man pages and completion it installs document every command, this one
 * included, so they come from main.ts (`operatorTexts`), which imports them only here.
 */
export async function setup(args: string[], operatorTexts: () => Promise<OperatorTexts>): Promise<number> {
  const { values } = withUsageErrors(() =>
    parseArgs({
      args,
      options: {
        config: { type: 'string' },
        systemd: { type: 'boolean' },
        http: { type: 'boolean' },
        uninstall: { type: 'boolean' },
        purge: { type: 'boolean' },
      },
      strict: true,
    }),
  );
  if (values.http && !values.systemd) throw new UsageError('--http needs --systemd');
  if (values.purge && !values.uninstall) throw new UsageError('--purge needs --uninstall');
  if (values.uninstall && values.systemd) throw new UsageError('--uninstall removes the units too: it takes no --systemd');
  const { DEFAULT_CONFIG_PATH, loadConfig } = await import('../daemon/config.js');
  const config = loadConfig(values.config);
  if (values.uninstall) {
    const { uninstallHost } = await import('../setup/uninstall.js');
    const report = await uninstallHost(config, { purge: values.purge, configFile: values.config });
    process.stdout.write(report.map((line) => `${line}\n`).join(''));
    return 0;
  }
  const { setupHost } = await import('../setup/host.js');
  const { SetupRecord } = await import('../setup/record.js');
  const path = await import('node:path');
  const record = SetupRecord.load(path.dirname(DEFAULT_CONFIG_PATH));
  // One line per thing created or found, so a second run shows that nothing changed.
  const report = await setupHost(config, { record });
  const { installOperatorFiles } = await import('../setup/operator_files.js');
  report.push(...(await installOperatorFiles(await operatorTexts(), undefined, undefined, record)));
  if (values.systemd) {
    // After setupHost: the socket unit names the group it has just created.
    const { installHttpUnit, installSystemdUnits } = await import('../setup/systemd_units.js');
    report.push(...(await installSystemdUnits(config, { configFile: values.config, record })));
    if (values.http) report.push(...(await installHttpUnit(config, { record })));
  }
  process.stdout.write(report.map((line) => `${line}\n`).join(''));
  return 0;
}
