"""Errors meant for the user: the CLI prints their message, never a traceback."""


class BardError(Exception):
    """Bad input or a failed stage, with a message that names the file, row and field."""
