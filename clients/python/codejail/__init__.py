"""edx-codejail's Python API, run through the codejail daemon (codejaild) over its Unix socket.

The modules and names are those of edx-codejail 4.1.1; the sandbox is the daemon's. See the
"Python package" section of the project's README for what differs from the original.
"""

# The edx-codejail release whose API this package provides.
__version__ = '4.1.1'
