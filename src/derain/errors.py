"""The one exception type a user can cause.

Everything that is the user's fault (a missing file, a corrupt image, a checkpoint that does not fit the
model, an unwritable folder) raises :class:`DerainError` with a message that makes sense on one line. The
CLI prints it as ``derain: error: <message>`` and exits non-zero; programming errors keep their traceback.
"""


class DerainError(Exception):
    """A problem with the user's input, reported as one clear line."""
