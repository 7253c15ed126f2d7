"""The package's shape: one public API list, one option list, errors in one module, no import cycles."""

import ast
import inspect
import subprocess
import sys
from pathlib import Path

import typer.main

import difficulty_curation
from difficulty_curation import errors
from difficulty_curation.cli import app
from difficulty_curation.config import DEFAULT_BATCH_SIZE, RolloutConfig, ScoringConfig, option_help
from difficulty_curation.scoring import score_difficulty

PACKAGE = Path(difficulty_curation.__file__).parent


def test_every_public_name_resolves():
    for name in difficulty_curation.__all__:
        assert getattr(difficulty_curation, name) is not None, name


def test_the_public_list_the_lazy_table_and_the_type_checking_block_name_the_same_things():
    tree = ast.parse((PACKAGE / "__init__.py").read_text())
    checked = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", "") == "TYPE_CHECKING":
            for item in node.body:
                checked.update({alias.name: item.module for alias in item.names})
    lazy = {name: module for name, module in difficulty_curation._EXPORTS.items()}
    assert checked == lazy
    assert set(difficulty_curation.__all__) == {*lazy, "__version__"}


def test_the_public_api_lists_runners_cards_formats_and_recipes():
    for name in ("score_dataset", "score_to_dir", "score_distributed", "rescore_dir", "write_card", "to_trl_format"):
        assert name in difficulty_curation.__all__
    for name in ("sft", "grpo", "evaluate"):
        assert name in difficulty_curation.__all__


def test_the_recipes_and_formats_take_one_column_spec_with_the_scoring_defaults():
    four = {"prompt_column", "answer_column", "image_column", "system_prompt"}
    for name in ("sft", "grpo", "evaluate", "to_trl_format", "from_trl_format"):
        parameters = inspect.signature(getattr(difficulty_curation, name)).parameters
        assert parameters["columns"].default == ScoringConfig(model="m").columns, name
        assert not four & set(parameters), name


def test_every_exception_class_lives_in_errors_and_is_exported():
    defined_elsewhere = []
    for path in PACKAGE.rglob("*.py"):
        if path.name == "errors.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and node.name.endswith("Error"):
                defined_elsewhere.append(f"{path.relative_to(PACKAGE)}:{node.name}")
    assert defined_elsewhere == []
    classes = [name for name, value in vars(errors).items() if inspect.isclass(value) and issubclass(value, Exception)]
    assert classes and set(classes) <= set(difficulty_curation.__all__)


def test_importing_the_package_loads_no_heavy_dependency():
    code = "import sys, difficulty_curation; print(sorted(m for m in ('torch', 'datasets', 'transformers', 'vllm') if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


# -- one option list ----------------------------------------------------------------------------


def _defaults() -> dict:
    config = ScoringConfig(model="m")
    flat = {name: getattr(config, name, None) for name in ScoringConfig.option_names()}
    flat.update({name: getattr(config.rollout, name) for name in vars(RolloutConfig())})
    return flat


def test_score_difficulty_takes_exactly_the_config_options_with_the_config_defaults():
    parameters = inspect.signature(score_difficulty).parameters
    assert set(parameters) == set(ScoringConfig.option_names())
    defaults = _defaults()
    for name, parameter in parameters.items():
        if name in ("model", "engine_options", "chat_template_kwargs"):
            continue
        assert parameter.default == defaults[name], name


def test_curate_score_has_an_option_per_config_field_with_its_default_and_help():
    command = typer.main.get_command(app).commands["score"]
    params = {param.name: param for param in command.params}
    params["engine_options"] = params.pop("engine_option")
    defaults = _defaults()
    for name in ScoringConfig.option_names():
        assert name in params, f"curate score has no option for {name}"
        if name in ("model", "engine_options", "chat_template_kwargs"):
            continue
        assert params[name].default == defaults[name], name
        assert option_help(name) in (params[name].help or ""), name
    assert params["batch_size"].default == DEFAULT_BATCH_SIZE


def test_from_dict_inverts_to_dict():
    config = ScoringConfig.from_options(
        "m", num_rollouts=3, seed=2, verifier="math", image_column=None, engine_options={"dtype": "float32"}
    )
    assert ScoringConfig.from_dict(config.to_dict()) == config


def test_an_unknown_option_is_named():
    import pytest

    from difficulty_curation.errors import ConfigError

    with pytest.raises(ConfigError, match=r"unknown scoring option\(s\) \['temprature'\]"):
        ScoringConfig.from_options("m", temprature=0.5)


def test_the_rollout_cache_key_covers_exactly_the_options_that_change_rollouts():
    assert set(ScoringConfig(model="m").rollout_identity()) == {
        "model",
        "revision",
        "backend",
        "adaptive",
        "num_rollouts",
        "temperature",
        "top_p",
        "top_k",
        "max_new_tokens",
        "seed",
    }


# -- the import graph -----------------------------------------------------------------------------


def _imports(package: Path = PACKAGE) -> dict[str, set[str]]:
    """Module -> the package modules it imports anywhere: at module level, inside functions, under TYPE_CHECKING.

    A function-level import is a cycle all the same, only one that bites later (when the function runs).
    """
    graph = {}
    for path in package.rglob("*.py"):
        module = ".".join(("difficulty_curation", *path.relative_to(package).with_suffix("").parts))
        module = module.removesuffix(".__init__")
        targets = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("difficulty_curation"):
                targets.add(node.module)
                # `from difficulty_curation.runners import in_memory` imports the module `in_memory`
                targets.update(f"{node.module}.{alias.name}" for alias in node.names)
            elif isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names if alias.name.startswith("difficulty_curation"))
        graph[module] = targets
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str]:
    """One import cycle of `graph` (its modules in order, the first repeated at the end), or []."""
    state: dict[str, int] = {}

    def visit(module: str, path: list[str]) -> list[str]:
        state[module] = 1
        for target in sorted(graph.get(module, ())):
            if target not in graph:  # a name, not a module
                continue
            if state.get(target) == 1:
                path = [*path, module]
                return [*path[path.index(target) :], target]
            if target not in state:
                found = visit(target, [*path, module])
                if found:
                    return found
        state[module] = 2
        return []

    for module in sorted(graph):
        if module not in state:
            found = visit(module, [])
            if found:
                return found
    return []


def test_the_import_graph_has_no_cycle_counting_imports_inside_functions():
    assert _cycle(_imports()) == []


def test_the_cycle_check_sees_an_import_inside_a_function(tmp_path):
    (tmp_path / "scoring.py").write_text("from difficulty_curation.runners import in_memory\n")
    (tmp_path / "runners").mkdir()
    (tmp_path / "runners" / "__init__.py").write_text("")
    (tmp_path / "runners" / "in_memory.py").write_text("def run():\n    import difficulty_curation.scoring\n")
    assert _cycle(_imports(tmp_path)) == [
        "difficulty_curation.runners.in_memory",
        "difficulty_curation.scoring",
        "difficulty_curation.runners.in_memory",
    ]
    (tmp_path / "runners" / "in_memory.py").write_text("def run():\n    pass\n")
    assert _cycle(_imports(tmp_path)) == []


def test_nothing_reaches_back_up_the_pipeline():
    order = [
        ["version", "errors", "redact", "retry"],
        ["columns", "config"],
        [
            "images",
            "prompts",
            "answers",
            "verifiers",
            "buckets",
            "schema",
            "splits",
            "provenance",
            "models",
            "fingerprints",
        ],
        ["engines"],
        ["scoring"],
        ["runners", "transforms", "compare", "stats", "audit", "plan"],
        ["cards", "exports", "hub", "recipes", "report"],
        ["cli", "demo"],
    ]
    stage = {name: position for position, names in enumerate(order) for name in names}
    graph = _imports()
    backwards = []
    for module, targets in graph.items():
        parts = module.split(".")
        if len(parts) < 2 or parts[1] not in stage:
            continue
        for target in targets:
            target_parts = target.split(".")
            if len(target_parts) > 1 and target_parts[1] in stage and stage[target_parts[1]] > stage[parts[1]]:
                backwards.append(f"{module} -> {target}")
    assert backwards == []
