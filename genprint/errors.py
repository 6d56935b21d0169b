"""One exception type for input the user can fix; the CLI prints it as a single line."""


class GenprintError(Exception):
    """Bad input or configuration: the message says what is wrong and what to do."""
