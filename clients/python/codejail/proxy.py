"""Where the original's proxy process lived.

The original could start jailed code through a long-lived proxy process (the PROXY limit,
$CODEJAIL_PROXY). The codejail daemon is that long-lived process here: PROXY is accepted and
ignored, and no proxy process is ever started.
"""

# The original's running proxy process; never one here.
PROXY_PROCESS = None
