"""Where the original's subprocess helpers lived.

Runs happen in the codejail daemon, so there is no local subprocess to start or kill. What
remains is the logger: jail_code logs each run of a call with a slug through it, as the
original logs the process it started.
"""

import logging

log = logging.getLogger("codejail")
