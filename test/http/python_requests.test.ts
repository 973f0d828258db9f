// `codejail serve` posted to as edx-platform's remote exec does (xmodule/capa/safe_exec/
// remote_exec.py: requests.post(url, files=extra_files, data={'payload': json.dumps(data)}) and
// response.json()), with Debian's python3-requests.
import { spawnSync } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeZip, startTestServe, type TestServe } from '../helpers/serve.js';

const isRoot = process.getuid?.() === 0;
const hasRequests = spawnSync('/usr/bin/python3', ['-c', 'import requests']).status === 0;

/** The edx-platform side: send_safe_exec_request_v0, then what safe_exec does with the answer. */
const EDX_CLIENT = `
import json, math, sys
import requests

url, zip_path = sys.argv[1], sys.argv[2]
with open(zip_path, 'rb') as f:
    python_lib = f.read()

def remote_exec(code, globals_dict, extra_files, python_path):
    data = {'code': code, 'globals_dict': globals_dict, 'python_path': python_path,
            'limit_overrides_context': 'course-v1:edX+Demo+2026', 'slug': 'problem-1', 'unsafely': False}
    response = requests.post(url + '/api/v0/code-exec', files=extra_files,
                             data={'payload': json.dumps(data)}, timeout=(5, 60))
    response.raise_for_status()
    answer = response.json()
    return response.headers['content-type'], answer.get('emsg'), answer['globals_dict']

out = {}
ctype, emsg, g = remote_exec('import course_lib\\nanswer = course_lib.check(x)\\nratio = x / 0.0 if False else float("inf")',
                             {'x': 6, 'nan_in': float('nan')}, [('python_lib.zip', python_lib)], ['python_lib.zip'])
out['ok'] = {'ctype': ctype, 'emsg': emsg, 'answer': g['answer'], 'ratio_is_inf': math.isinf(g['ratio']),
             'nan_back': math.isnan(g['nan_in'])}
ctype, emsg, g = remote_exec('1/0', {'x': 6}, [], None)
out['failed'] = {'emsg': emsg, 'globals': g}
bad = requests.post(url + '/api/v0/code-exec', files=[('evil.zip', b'x')],
                    data={'payload': json.dumps({'code': '', 'globals_dict': {}})})
out['bad_name'] = {'status': bad.status_code, 'json': bad.json()}
print(json.dumps(out))
`;

describe.skipIf(!isRoot || !hasRequests)('http: edx-platform through python3-requests', () => {
  let serve: TestServe;
  beforeAll(async () => {
    serve = await startTestServe();
  }, 30_000);
  afterAll(async () => {
    await serve?.stop();
  }, 30_000);

  it('support_http_edx_platform_remote_exec', async () => {
    const zipPath = `${serve.cwd}/upload-source.zip`;
    const { writeFileSync } = await import('node:fs');
    writeFileSync(zipPath, makeZip({ 'course_lib.py': 'def check(n):\n    return n * 7\n' }));
    const run = spawnSync('/usr/bin/python3', ['-c', EDX_CLIENT, serve.url, zipPath], { encoding: 'utf8', timeout: 60_000 });
    expect(run.stderr).toBe('');
    const out = JSON.parse(run.stdout);
    expect(out.ok).toEqual({ ctype: 'application/json', emsg: null, answer: 42, ratio_is_inf: true, nan_back: true });
    expect(out.failed.globals).toEqual({ x: 6 });
    expect(out.failed.emsg).toContain('ZeroDivisionError: division by zero');
    expect(out.bad_name).toEqual({ status: 400, json: { error: "Only allowed name for uploaded file is 'python_lib.zip'" } });
  });
});
