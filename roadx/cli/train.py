"""Placeholder: replaced by the module's owner."""


def train() -> None:
    """Not built yet."""
    raise NotImplementedError
