"""Fixtures for the credential helper tests (helpers live in ``credhelpers``)."""

from __future__ import annotations

from pathlib import Path

import pytest
from credhelpers import Cred


@pytest.fixture
def cred(tmp_path: Path) -> Cred:
    return Cred(tmp_path)
