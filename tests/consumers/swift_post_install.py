"""After installing ms-swift's environment: let PyPI's torchvision import beside the CPU torch.

ms-swift's Qwen2.5-VL template imports `qwen_vl_utils`, which imports torchvision at the top (it
resizes images with torchvision's Python transforms). PyPI's torchvision 0.28.0 is a CUDA build whose
C++ ops do not load beside our CPU torch 2.13, and its import then fails ("operator torchvision::nms
does not exist"). The vLLM tier's test-environment stand-in (`tests/vllm_env/torchvision_ops_stub.py`)
defines the two missing operator schemas before torchvision needs them; a `.pth` line installs it in
every interpreter of this environment. Calling those ops still fails; images never need them.
"""

import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

STUB = Path(__file__).resolve().parents[1] / "vllm_env" / "torchvision_ops_stub.py"

site = Path(sysconfig.get_paths()["purelib"])
shutil.copy(STUB, site / STUB.name)
(site / "torchvision_ops_stub.pth").write_text("import torchvision_ops_stub; torchvision_ops_stub.install()\n")
print(f"installed {STUB.name} in {site}")

# The self-check runs in a fresh interpreter: a .pth line only runs at start-up.
SELF_CHECK = """
import torch, torchvision, torchvision_ops_stub
from torchvision.transforms import v2
assert v2.Resize(8)(torch.zeros(3, 16, 16)).shape == (3, 8, 8)
from qwen_vl_utils import fetch_image
from PIL import Image
assert fetch_image({"image": Image.new("RGB", (28, 28))}).size == (56, 56)
print("torchvision", torchvision.__version__, "imports and transforms images, and so does qwen_vl_utils;",
      "the stand-in defines its missing C++ op schemas" if torchvision_ops_stub.active else "its own C++ ops loaded")
"""
subprocess.run([sys.executable, "-c", SELF_CHECK], check=True)
