"""The error the command line turns into one line on stderr and a non-zero exit."""


class CommandError(Exception):
    """Bad input from the user (an unknown env id, a missing run directory...).

    The CLI prints ``dqnkit: error: <message>`` and exits with status 2, with no traceback.
    Anything else that escapes is a bug and keeps its traceback.
    """
