"""The package's shape: the library never imports the experiment commands or a plotting
library, and no code replaces an attribute of an object it did not make (no run-time
patching; the one guarded exception is numpy's removed aliases, restored by compat)."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "recbole_pmmrec"
LIBRARY = sorted(p for p in PACKAGE.rglob("*.py") if "experiments" not in p.relative_to(PACKAGE).parts)
# (module, function) allowed to set an attribute of another object: compat's numpy aliases
ALLOWED_PATCHES = {("compat.py", "restore_numpy_aliases")}


def _imports(tree):
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            yield node.module or ""


def _bound_names(func):
    """Names a function binds itself: parameters excluded, assignment and loop targets."""
    names = set()
    for node in ast.walk(func):
        targets = []
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, (ast.For, ast.comprehension)):
            targets = [node.target]
        elif isinstance(node, (ast.With, ast.AsyncWith)):
            targets = [item.optional_vars for item in node.items if item.optional_vars is not None]
        names.update(_target_names(targets))
    return names


def _target_names(targets):
    """Plain names assigned by ``targets`` (through tuples), not those inside ``a.b = ...``."""
    for target in targets:
        if isinstance(target, ast.Name):
            yield target.id
        elif isinstance(target, (ast.Tuple, ast.List)):
            yield from _target_names(target.elts)
        elif isinstance(target, ast.Starred):
            yield from _target_names([target.value])


def _foreign_attribute_stores(tree):
    """``(function, code)`` of each attribute set or deleted on an object that is neither
    ``self``/``cls`` nor made in the same function, and each ``setattr``/``delattr``."""
    scopes = [(node.name, node) for node in ast.walk(tree) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))]
    scopes.append(("<module>", ast.Module(body=[n for n in tree.body if not isinstance(
        n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))], type_ignores=[])))
    for name, scope in scopes:
        own = {"self", "cls"} | (_bound_names(scope) if name != "<module>" else set())
        for node in ast.walk(scope):
            if isinstance(node, ast.Attribute) and isinstance(node.ctx, (ast.Store, ast.Del)):
                base = node.value
                while isinstance(base, (ast.Attribute, ast.Subscript)):
                    base = base.value
                if not (isinstance(base, ast.Name) and base.id in own):
                    yield name, ast.unparse(node)
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("setattr", "delattr"):
                yield name, ast.unparse(node)


def _tree(path):
    return ast.parse(path.read_text(encoding="utf-8"))


def test_the_library_imports_no_experiment_command_and_no_plotting():
    found = [(path.name, module) for path in LIBRARY for module in _imports(_tree(path))
             if module.startswith(("recbole_pmmrec.experiments", "matplotlib"))]
    assert LIBRARY and not found, found


def test_no_function_replaces_an_attribute_of_another_object():
    found = [
        (path.name, function, code)
        for path in sorted(PACKAGE.rglob("*.py"))
        for function, code in _foreign_attribute_stores(_tree(path))
        if (path.name, function) not in ALLOWED_PATCHES
    ]
    assert not found, found


def test_the_checker_finds_a_monkeypatch():
    source = (
        "import torch\n"
        "def patch(trainer):\n"
        "    trainer._train_epoch = lambda *a: None\n"
        "    made = object()\n"
        "    made.x = 1\n"
        "torch.load = None\n"
    )
    assert list(_foreign_attribute_stores(ast.parse(source))) == [
        ("patch", "trainer._train_epoch"), ("<module>", "torch.load")]


def _keys_read(tree):
    """String keys of ``config[...]`` subscripts (and the fields of component settings)."""
    for node in ast.walk(tree):
        if (isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name) and node.value.id == "config"
                and isinstance(node.slice, ast.Constant) and isinstance(node.slice.value, str)):
            yield node.slice.value


def test_every_key_the_code_reads_has_a_default_and_plugin_keys_a_readme_line():
    import recbole
    import yaml

    from recbole_pmmrec.transfer import ARCHITECTURE_KEYS

    properties = PACKAGE.parent / "properties"
    plugin = {}
    for file in [properties / "overall.yaml", properties / "model" / "PMMRec.yaml"]:
        plugin.update(yaml.safe_load(file.read_text(encoding="utf-8")))
    recbole_defaults = {}
    for file in ("overall.yaml", "dataset/sample.yaml"):  # RecBole's defaults for every run
        recbole_defaults.update(yaml.safe_load((Path(recbole.__file__).parent / "properties" / file).read_text()))
    read = {key for path in LIBRARY for key in _keys_read(_tree(path))} | set(ARCHITECTURE_KEYS)
    # set by RecBole's Config itself rather than read from YAML
    derived = {"model", "dataset", "data_path", "device", "MODEL_TYPE", "local_rank", "valid_metric_bigger",
               "single_spec", "eval_type"}
    missing = sorted(read - set(plugin) - set(recbole_defaults) - derived)
    assert not missing, f"keys read without a default in properties/: {missing}"
    readme = (PACKAGE.parent / "README.md").read_text(encoding="utf-8")
    undocumented = sorted(k for k in plugin if f"`{k}`" not in readme)
    assert not undocumented, f"plugin keys without a README line: {undocumented}"
