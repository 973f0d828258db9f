"""The way xqueue-watcher's JailedGrader drives jail_code: a support package and the grader sent as
`files`, the submission as `extra_files`, the interpreter run with `-m <support>.run` in `argv`
and no `code`, its JSON report read from `stdout`; with the commands "python" and "python3", both
configured with a bin_path and the caller's user name as JailedGrader's deployments do."""

import getpass
import json
import textwrap

import pytest

from codejail import jail_code

RUNNER = '''\
import importlib.util
import json
import sys
import traceback


def load(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(grader_file, submission_file, seed):
    report = {"seed": int(seed), "python": sys.version_info[0], "errors": []}
    grader = load("grader", grader_file)
    try:
        submission = load("submission", submission_file)
    except Exception:
        report["errors"].append(traceback.format_exc(limit=0).strip())
        submission = None
    report["score"] = grader.score(submission) if submission is not None else 0
    print(json.dumps(report))


main(*sys.argv[1:])
'''

GRADER = '''\
def score(submission):
    greet = getattr(submission, "greet", None)
    return 1 if callable(greet) and greet("Ada") == "hello Ada" else 0
'''


@pytest.fixture(name="grader_files")
def fixture_grader_files(tmp_path):
    support = tmp_path / "grading_support"
    support.mkdir()
    (support / "__init__.py").write_text("")
    (support / "run.py").write_text(RUNNER)
    grader = tmp_path / "greet_grader.py"
    grader.write_text(GRADER)
    return [support, grader]


def grade(command, grader_files, submission):
    support, grader = grader_files
    res = jail_code.jail_code(
        command,
        files=[support, grader],
        extra_files=[("submission.py", ("# coding: utf8\n" + submission).encode("utf-8"))],
        argv=["-B", "-m", "grading_support.run", grader.name, "submission.py", "17"],
    )
    assert res.status == 0, res.stderr.decode("utf-8", "replace")
    return json.loads(res.stdout)


@pytest.fixture(params=["python", "python3"])
def command(request):
    jail_code.configure("python", "/usr/bin/python3", user=getpass.getuser())
    jail_code.configure("python3", "/usr/bin/python3", user=getpass.getuser())
    return request.param


def test_a_correct_submission_scores_1(command, grader_files):
    report = grade(command, grader_files, textwrap.dedent('''
        def greet(name):
            return "hello " + name
    '''))
    assert report == {"seed": 17, "python": 3, "errors": [], "score": 1}


@pytest.mark.parametrize("submission", [
    "def wave(name):\n    return 'hello ' + name\n",
    "",
    "this is not python",
])
def test_a_wrong_empty_or_broken_submission_scores_0(command, grader_files, submission):
    report = grade(command, grader_files, submission)
    assert report["score"] == 0
    assert bool(report["errors"]) == (submission == "this is not python")


def test_python3_configured_without_python():
    jail_code.COMMANDS = {}
    jail_code.configure("python3", "/usr/bin/python3")
    assert not jail_code.is_configured("python")
    res = jail_code.jail_code("python3", "import sys; print(sys.version_info[0])")
    assert (res.status, res.stdout) == (0, b"3\n")
