"""Placeholder: replaced by the module's owner."""


def models() -> None:
    """Not built yet."""
    raise NotImplementedError
