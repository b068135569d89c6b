"""Placeholder: replaced by the module's owner."""


def vectorize() -> None:
    """Not built yet."""
    raise NotImplementedError
