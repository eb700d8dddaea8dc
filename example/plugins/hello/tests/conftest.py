from __future__ import annotations

import sys
from pathlib import Path

# the plugin's tests run from a checkout too (installed, it is on the path anyway)
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
