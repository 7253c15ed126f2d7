import subprocess
import sys

import difficulty_curation


def test_every_public_name_resolves():
    for name in difficulty_curation.__all__:
        assert getattr(difficulty_curation, name) is not None, name


def test_importing_the_package_loads_no_heavy_dependency():
    code = "import sys, difficulty_curation; print(sorted(m for m in ('torch', 'datasets', 'transformers', 'vllm') if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
