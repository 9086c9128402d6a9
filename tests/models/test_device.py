"""workbench.models.device.resolve_device: one rule for "auto"."""
import subprocess
import sys

import pytest

from workbench.errors import WorkbenchError
from workbench.models.device import resolve_device


def test_auto_and_cpu():
    import torch

    want = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto") == resolve_device(None) == resolve_device(" AUTO ") == want
    assert resolve_device("cpu") == "cpu"


@pytest.mark.parametrize("bad", ["gpu", "cuda:x", "mps", 3])
def test_unknown_devices_are_refused(bad):
    with pytest.raises(WorkbenchError, match="'auto', 'cpu' or 'cuda"):
        resolve_device(bad)


def test_the_caller_picks_the_error_class():
    import torch

    class MyError(WorkbenchError):
        pass

    with pytest.raises(MyError):
        resolve_device("nope", error=MyError)
    if not torch.cuda.is_available():
        with pytest.raises(MyError, match="CUDA is not available"):
            resolve_device("cuda:0", error=MyError)


def test_importing_it_does_not_import_torch():
    code = "import sys, workbench.models.device, workbench.scoring.kmeans, workbench.io.progress; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"
