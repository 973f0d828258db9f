"""Directory helpers under the names the original's codejail.util gives them."""

import contextlib
import os
import shutil
import tempfile


@contextlib.contextmanager
def temp_directory():
    """Yields a new private directory (prefix "codejail-"), deleted with its contents on exit."""
    path = tempfile.mkdtemp(prefix="codejail-")
    try:
        yield path
    finally:
        # Not ignore_errors: a directory that cannot be removed is a fault worth seeing.
        shutil.rmtree(path)


@contextlib.contextmanager
def change_directory(new_dir):
    """Makes `new_dir` the working directory for the block, then returns to the previous one."""
    previous = os.getcwd()
    os.chdir(new_dir)
    try:
        yield new_dir
    finally:
        os.chdir(previous)
