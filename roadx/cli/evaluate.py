"""Placeholder: replaced by the module's owner."""


def evaluate() -> None:
    """Not built yet."""
    raise NotImplementedError
