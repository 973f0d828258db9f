// Self-check probes that more than one layer enforces (each layer lists the ones it does). A
// probe only one layer enforces belongs in that layer's module.
import type { SelfCheckProbe } from './layer.js';

export const READ_PASSWD: SelfCheckProbe = {
  name: 'reading /etc/passwd is denied',
  code: "try:\n    open('/etc/passwd').read()\n    print('ALLOWED')\nexcept PermissionError:\n    print('DENIED')\n",
};

export const INET_SOCKET: SelfCheckProbe = {
  name: 'creating an AF_INET socket is denied',
  code:
    'import socket\ntry:\n    socket.socket(socket.AF_INET, socket.SOCK_STREAM)\n    print("ALLOWED")\n' +
    'except PermissionError:\n    print("DENIED")\n',
};

export const EXECV: SelfCheckProbe = {
  name: 'executing /usr/bin/true with os.execv is denied',
  code: "import os\ntry:\n    os.execv('/usr/bin/true', ['true'])\nexcept PermissionError:\n    print('DENIED')\n",
};

export const SUBPROCESS: SelfCheckProbe = {
  name: 'executing /usr/bin/true with subprocess is denied',
  code:
    "import subprocess\ntry:\n    subprocess.run(['/usr/bin/true'])\n    print('ALLOWED')\n" +
    'except PermissionError:\n    print("DENIED")\n',
};
