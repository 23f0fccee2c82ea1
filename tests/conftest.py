import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
sys.path.insert(0, str(REPO / "workflow"))
os.environ.setdefault("OMP_NUM_THREADS", "2")


@pytest.fixture
def shared_data():
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real sample data absent: {SHARED_DATA} (see shared/data/MANIFEST.md)")
    return SHARED_DATA
