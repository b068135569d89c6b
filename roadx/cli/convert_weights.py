"""Placeholder: replaced by the module's owner."""


def convert_weights() -> None:
    """Not built yet."""
    raise NotImplementedError
