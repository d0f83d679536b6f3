"""The one exception type users see for bad input: it names the file or value and what would be right."""


class HyperguideError(Exception):
    """Bad input or a broken file, with a message that says which and what is expected."""
