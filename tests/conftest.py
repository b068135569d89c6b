"""Shared test fixtures.

Tests that need the real data in ``../shared/data`` (or ``$ROADX_DATA``) use the
``shared_data`` fixture: it skips locally when the data is absent, and *fails* when
``CI=true``, so CI can never pass by silently skipping real-data tests.
"""

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path:
    """The folder of real imagery and labels: ``$ROADX_DATA`` or ``../shared/data``."""
    return Path(os.environ.get("ROADX_DATA", REPO.parent / "shared" / "data")).resolve()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path to ``../shared/data``; fails under CI=true when it is missing, else skips."""
    root = shared_data_dir()
    if not (root / "SOURCES.md").is_file():
        msg = f"real test data not found at {root} (set ROADX_DATA)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(msg)
        pytest.skip(msg)
    return root


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread() -> Iterator[None]:
    """Run torch single-threaded in tests: the tensors here are small, and on a shared 2-core
    machine intra-op thread wake-ups cost more than they save (seen 10x slower)."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(autouse=True)
def restore_roadx_logger() -> Iterator[None]:
    """CLI runs configure the ``roadx`` logger (level, rich handler); undo that after each
    test so that log assertions do not depend on test order."""
    import logging

    logger = logging.getLogger("roadx")
    level, handlers = logger.level, logger.handlers[:]
    yield
    logger.setLevel(level)
    logger.handlers[:] = handlers
