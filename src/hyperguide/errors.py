"""The one exception type users see for bad input (it names the file or value and what would be right), and the
library's own warning category."""


class HyperguideError(Exception):
    """Bad input or a broken file, with a message that says which and what is expected."""


class HyperguideWarning(UserWarning):
    """Something the user should know that does not stop the work (a cache that cannot be written, a fallback); the
    command line shows it as one line, `hyperguide CMD: warning: ...`."""
