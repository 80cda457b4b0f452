import importlib.util
import os
import sys
from pathlib import Path

import pytest
import torch

# The reference implementation beside the tests.
sys.path.insert(0, str(Path(__file__).parent))
torch.set_num_threads(int(os.environ.get("KINFONCE_TEST_THREADS", "2")))

# Without a GPU the Triton kernels run in Triton's interpreter (numpy), which reads this variable
# when triton is first imported: kinfonce imports triton only when the Triton engine runs.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
# The device the engines in torch operations and Triton are tested on.
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
# Whether the Triton kernels can run here: on a GPU, or in the interpreter.
TRITON_RUNS = importlib.util.find_spec("triton") is not None and (
    DEVICE == "cuda" or os.environ.get("TRITON_INTERPRET") == "1"
)

# The golden vectors live beside the checkout (../shared/golden from the repository root), or
# wherever KINFONCE_GOLDEN points.
REPO = Path(__file__).resolve().parents[3]
GOLDEN = Path(os.environ.get("KINFONCE_GOLDEN", REPO.parent / "shared" / "golden" / "kernel_infonce.json"))


@pytest.fixture(scope="session")
def golden_cases():
    if not GOLDEN.is_file():
        pytest.skip(f"golden vectors not found at {GOLDEN} (set KINFONCE_GOLDEN to the file)")
    import json

    return json.loads(GOLDEN.read_text())["cases"]
