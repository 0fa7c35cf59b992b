"""User-facing errors: one line that names the file, key or shape at fault."""


class KinemaError(ValueError):
    """A problem with the user's input; the CLI prints it as one line and exits with code 2."""
