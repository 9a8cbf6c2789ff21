"""The package's layering beyond import-linter's contracts (``make lint``): no function-local
imports of the package's own modules (they hide import cycles), and no script that edits
``sys.path`` to import another script."""
import ast
import glob
import os

from tests.helpers import REPO

PACKAGE = os.path.join(REPO, "projects", "CLIPSelf")


def _local_imports(path):
    """(line, text) of imports of clipself modules inside functions of a file."""
    tree = ast.parse(open(path).read(), path)
    found = []
    for fn in ast.walk(tree):
        if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for node in ast.walk(fn):
            if isinstance(node, ast.ImportFrom) and (
                    node.level > 0 or (node.module or "").split(".")[0] == "clipself"):
                found.append((node.lineno, f"from {'.' * node.level}{node.module or ''}"))
            elif isinstance(node, ast.Import) and any(
                    a.name.split(".")[0] == "clipself" for a in node.names):
                found.append((node.lineno, "import " + ", ".join(a.name for a in node.names)))
    return found


def test_no_function_local_imports_of_the_package():
    offenders = []
    for path in sorted(glob.glob(os.path.join(PACKAGE, "**", "*.py"), recursive=True)):
        offenders += [f"{os.path.relpath(path, REPO)}:{ln}: {text}"
                      for ln, text in _local_imports(path)]
    assert not offenders, "function-local imports of clipself modules:\n" + "\n".join(offenders)


def test_the_check_finds_a_local_import(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text("def f():\n    from ..modeling import CLIPViT\n    import clipself.data\n")
    assert [ln for ln, _ in _local_imports(str(probe))] == [2, 3]


def test_scripts_do_not_import_each_other_through_sys_path():
    for path in glob.glob(os.path.join(REPO, "tools", "*.py")):
        text = open(path).read()
        assert "sys.path.insert" not in text and "sys.path.append" not in text, path
