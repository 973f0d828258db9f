"""The client's side of `files` and `extra_files` (as src/client/files.ts).

The daemon never opens a path a client names: the client reads its own files and sends their
contents. Whoever can write into a directory passed in `files` can swap entries while it is
read, and the caller may have more rights than they do. So each entry is looked at once
(lstat), opened without following a symlink and without blocking, and the open fd is checked
(fstat) to be what lstat saw; a directory's children are reached through the directory's fd
(dir_fd), so replacing the directory by a symlink after it was opened cannot redirect the walk.
"""

import errno
import os
import stat

from ._wire import DEFAULT_MAX_FRAME_BYTES
from .errors import CodejailError

# The protocol's bound on a request's `files` entries (src/protocol/schema.ts).
MAX_FILE_ENTRIES = 10000

_OPEN_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
_OPEN_DIR = _OPEN_FILE | os.O_DIRECTORY


class _Walk:
    def __init__(self, max_bytes):
        self.entries = []
        self.bytes_left = max_bytes
        self.max_bytes = max_bytes


def collect_files(paths, max_bytes=DEFAULT_MAX_FRAME_BYTES):
    """The protocol's file entries for `paths`, each named by its basename in the run directory.

    A file becomes one entry; a directory ``/x/pylib`` becomes ``pylib``, ``pylib/mod.py``, ...
    (parents first); a symlink, at the top or inside a directory, stays a symlink with its target
    unchanged, so one pointing outside the run directory stays unreadable in the sandbox.
    """
    walk = _Walk(max_bytes)
    top_names = set()
    for given in paths:
        if isinstance(given, os.PathLike):
            given = os.fspath(given)
        if isinstance(given, bytes):
            given = os.fsdecode(given)
        if not isinstance(given, str) or given == '':
            raise CodejailError('bad_request', 'files must be a list of non-empty paths, not %r' % (given,))
        local_path = os.path.abspath(given)
        name = os.path.basename(local_path)
        if name == '':
            raise CodejailError('bad_request', "files: cannot send '%s', it has no name" % given)
        if name in top_names:
            raise CodejailError('bad_request', "files: two paths are named '%s' in the run directory" % name)
        top_names.add(name)
        # The given path's parents are the caller's choice and are followed; its last component
        # is not.
        parent = os.open(os.path.dirname(local_path), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            _collect(parent, name, local_path, name, walk)
        finally:
            os.close(parent)
    return walk.entries


def _collect(dir_fd, entry, local_path, name, walk):
    if len(walk.entries) >= MAX_FILE_ENTRIES:
        raise CodejailError(
            'bad_request', 'files: more than %d files, directories and symlinks to send' % MAX_FILE_ENTRIES
        )
    seen = _read_local(local_path, lambda: os.stat(entry, dir_fd=dir_fd, follow_symlinks=False))
    if stat.S_ISLNK(seen.st_mode):
        # readlink fails (EINVAL) if the entry is no longer a link.
        target = _read_local(local_path, lambda: os.readlink(entry, dir_fd=dir_fd))
        walk.entries.append({'type': 'symlink', 'name': name, 'target': target})
    elif stat.S_ISREG(seen.st_mode):
        fd = _open_same(dir_fd, entry, local_path, seen, _OPEN_FILE)
        try:
            data = _read_bounded(fd, local_path, seen.st_size, walk)
        finally:
            os.close(fd)
        walk.entries.append({'type': 'file', 'name': name, 'data': data, 'executable': bool(seen.st_mode & 0o111)})
    elif stat.S_ISDIR(seen.st_mode):
        fd = _open_same(dir_fd, entry, local_path, seen, _OPEN_DIR)
        try:
            walk.entries.append({'type': 'dir', 'name': name})
            # Sorted so that the same tree always produces the same request.
            for child in sorted(_read_local(local_path, lambda: os.listdir(fd))):
                _collect(fd, child, os.path.join(local_path, child), name + '/' + child, walk)
        finally:
            os.close(fd)
    else:
        raise _not_sendable(local_path)


def _open_same(dir_fd, entry, local_path, seen, flags):
    """Opens what lstat saw, refusing anything else (a symlink, FIFO or other file swapped in)."""
    try:
        fd = os.open(entry, flags, dir_fd=dir_fd)
    except OSError as err:
        # ELOOP: now a symlink; ENOTDIR: no longer a directory; ENXIO: now a socket.
        if err.errno in (errno.ELOOP, errno.ENOTDIR, errno.ENXIO):
            raise _changed(local_path) from err
        raise _unreadable(local_path, err) from err
    try:
        opened = os.fstat(fd)
        if (
            opened.st_dev != seen.st_dev
            or opened.st_ino != seen.st_ino
            or stat.S_IFMT(opened.st_mode) != stat.S_IFMT(seen.st_mode)
        ):
            if stat.S_ISREG(opened.st_mode) or stat.S_ISDIR(opened.st_mode):
                raise _changed(local_path)
            raise _not_sendable(local_path)
        return fd
    except BaseException:
        os.close(fd)
        raise


def _read_bounded(fd, local_path, seen_size, walk):
    """Reads at most the size lstat saw, within what is left of the byte budget."""
    if seen_size > walk.bytes_left:
        raise CodejailError(
            'bad_request',
            "files: '%s' is %d bytes, and the files together may hold at most %d bytes"
            % (local_path, seen_size, walk.max_bytes),
        )
    chunks = []
    left = seen_size
    while left > 0:
        try:
            chunk = os.read(fd, min(left, 1 << 20))
        except OSError as err:
            raise _unreadable(local_path, err) from err
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    data = b''.join(chunks)
    walk.bytes_left -= len(data)
    return data


def encode_extra_files(extra_files):
    """Checks each (name, contents) pair: a plain name, contents as bytes (str as UTF-8)."""
    out = []
    for index, pair in enumerate(extra_files or ()):
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            raise CodejailError('bad_request', 'extra_files[%d] must be a (name, contents) pair' % index)
        name, data = pair
        problem = plain_name_problem(name)
        if problem:
            raise CodejailError('bad_request', 'extra_files name %r is not allowed: %s' % (name, problem))
        if isinstance(data, str):
            data = data.encode('utf-8')
        elif isinstance(data, (bytearray, memoryview)):
            data = bytes(data)
        elif not isinstance(data, bytes):
            raise CodejailError('bad_request', "extra_files '%s' contents must be bytes or str" % name)
        out.append([name, data])
    return out


def plain_name_problem(name):
    """Why `name` cannot be a file at the top of the run directory, or None."""
    if not isinstance(name, str) or not name:
        return 'must be a non-empty string'
    if len(name) > 4096:
        return 'is too long'
    if '\0' in name:
        return 'must not contain NUL'
    if '/' in name:
        return 'must be a plain name, without "/"'
    if name in ('.', '..'):
        return "must not be '.' or '..'"
    return None


def _read_local(local_path, read):
    try:
        return read()
    except OSError as err:
        raise _unreadable(local_path, err) from err


def _not_sendable(local_path):
    return CodejailError(
        'bad_request',
        "files: '%s' is not a regular file, directory or symlink (sockets, FIFOs and devices cannot be sent)"
        % local_path,
    )


def _changed(local_path):
    return CodejailError(
        'bad_request',
        "files: '%s' changed while it was being read (replaced by another file or a link); nothing was sent"
        % local_path,
    )


def _unreadable(local_path, err):
    reason = errno.errorcode.get(err.errno, str(err)) if err.errno else str(err)
    return CodejailError('bad_request', "files: cannot read '%s': %s" % (local_path, reason))
