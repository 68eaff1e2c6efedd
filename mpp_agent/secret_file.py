"""Reading a password from a file: the first line, at most ``MAX_SECRET_BYTES``, UTF-8.

Both daemons and mpp-admin read their Redis and MySQL passwords this way. A file is read only
up to its first line end, so a wrong path (``/dev/zero``, a log file, a disk image) costs one
bounded read and a clear error, never memory; bytes that are not UTF-8 text, or control
characters that no server takes in a password, are refused with a message that never holds
the file's content.
"""

from __future__ import annotations

import os

MAX_SECRET_BYTES = 4096


class SecretFileError(ValueError):
    """A password file that cannot be used; the message names the file, never its content."""


def read_first_line(path: str, what: str) -> str:
    """The first line of ``path`` (without its line end), ``what`` naming it in errors."""
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_SECRET_BYTES + 1)
    except OSError as exc:
        raise SecretFileError(f"cannot read the {what} file {path}: {exc.strerror}") from None
    line, newline, _ = data.partition(b"\n")
    if not newline and len(data) > MAX_SECRET_BYTES:
        raise SecretFileError(
            f"the {what} file {path} has no line end in its first {MAX_SECRET_BYTES} bytes: "
            "is it the right file?"
        )
    line = line.removesuffix(b"\r")
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SecretFileError(
            f"the {what} file {path} is not UTF-8 text (bad byte at offset {exc.start})"
        ) from None
    if any(ord(c) < 32 or ord(c) == 127 for c in text):
        raise SecretFileError(f"the {what} file {path} holds control characters on its first line")
    return text


def read_secret(path: str | None, env: str, what: str) -> str:
    """A password from the first line of ``path`` when given, else from the environment
    variable ``env`` ("" when neither): never from a command line."""
    if path:
        return read_first_line(path, what)
    return os.environ.get(env, "")
