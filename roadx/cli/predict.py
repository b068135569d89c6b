"""Placeholder: replaced by the module's owner."""


def predict() -> None:
    """Not built yet."""
    raise NotImplementedError
