"""What users read of an error."""


def first_line(error):
    """The first line of an exception's message (library errors run to pages), or its
    type's name when it has none."""
    return (str(error).strip().splitlines() or [type(error).__name__])[0]
