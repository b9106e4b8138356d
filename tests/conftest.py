"""Suite-wide settings: one torch thread keeps a 2-core CI machine from thrashing."""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
