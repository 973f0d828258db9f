// codejaild's --help text, apart from main.ts (which starts the daemon when loaded), so that the
// man page codejaild(8) is made from the same text (src/cli/man.ts).
export const CODEJAILD_USAGE = `usage: codejaild [--config FILE] [--socket PATH] [--log-level LEVEL] [--unsafe]

Runs untrusted code for codejail clients in layered Linux sandboxes. Must run as root.

  --config FILE      JSON configuration (default /etc/codejail/config.json, if it exists)
  --socket PATH      listen here instead of the configured socket path
  --log-level LEVEL  debug, info, warn or error, instead of the configured logLevel
  --unsafe           run code WITHOUT confinement (rlimits only); for development only
  --version          print the version and exit
  --help             show this help

Signals: SIGTERM/SIGINT stop (running work may finish for shutdownGraceMs), SIGHUP reloads the
configuration file. Under systemd the socket may be passed in (LISTEN_FDS) and NOTIFY_SOCKET /
WATCHDOG_USEC are honoured.
`;
