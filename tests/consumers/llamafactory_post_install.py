"""After installing LLaMA-Factory's environment: let torchaudio import without its compiled extension.

LLaMA-Factory's `data/mm_plugin.py` imports torchaudio at the top (for audio inputs only). PyPI's
newest torchaudio (2.11) is compiled against torch 2.11 and its extension cannot load beside our
pinned CPU torch 2.13. Without the extension files torchaudio imports in its supported
extension-less mode (`torchaudio._extension._load_lib` returns False when they are absent, as in a
pex deployment). Images, text and the dataset loader never touch torchaudio.
"""

import importlib.util
from pathlib import Path

package = Path(importlib.util.find_spec("torchaudio").origin).parent
for library in sorted((package / "lib").glob("*.so")):
    library.unlink()
    print(f"removed {library.name}: torchaudio's extension does not match torch 2.13")

import torchaudio  # noqa: E402

print(f"torchaudio {torchaudio.__version__} imports without its extension")
