"""The architecture's rules that can be checked from outside: torch-free rooms, one error mapper."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest
import typer

from convfeat.cli.common import friendly_errors
from convfeat.errors import ConvfeatError, InputError

PACKAGE = Path(__file__).resolve().parents[1] / "convfeat"


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_evaluation_and_store_import_without_torch():
    res = _run("import convfeat.evaluation, convfeat.store; import sys; assert 'torch' not in sys.modules, "
               "sorted(m for m in sys.modules if m.startswith('convfeat'))")
    assert res.returncode == 0, res.stderr


def test_audio_datasets_and_decode_worker_import_without_torch():
    res = _run("import convfeat.audio, convfeat.datasets, convfeat.extraction.worker, convfeat.models.mfcc; "
               "import sys; assert 'torch' not in sys.modules")
    assert res.returncode == 0, res.stderr


def test_a_decode_process_imports_neither_the_store_nor_the_pipeline():
    """Every extraction starts its decode processes anew: what they import is paid per run."""
    res = _run("import convfeat.extraction.worker; import sys; "
               "print(sorted(m for m in ('h5py', 'convfeat.store', 'convfeat.extraction.pipeline', "
               "'convfeat.extraction.cluster', 'scipy.signal', 'librosa') if m in sys.modules))")
    assert res.returncode == 0 and res.stdout.strip() == "[]", res.stdout + res.stderr


@pytest.mark.parametrize("argv", [["--help"], ["--version"], ["extract", "--help"], ["evaluate", "--help"],
                                  ["tag", "--help"], ["weights", "--help"], ["pretrain", "--help"]])
def test_cli_help_and_version_do_not_import_torch(argv):
    code = ("import sys\nfrom convfeat.cli import main\nsys.argv = ['convfeat'] + %r\n"
            "try:\n    main()\nexcept SystemExit as e:\n    assert e.code in (0, None), e.code\n"
            "assert 'torch' not in sys.modules, 'torch imported'\nprint('OK')" % argv)
    res = _run(code)
    assert res.returncode == 0 and res.stdout.strip().endswith("OK"), res.stderr[-2000:]


def test_user_errors_are_one_line_and_bugs_keep_their_traceback():
    @friendly_errors
    def bad_input():
        raise InputError("layers must be digits")

    @friendly_errors
    def bug():
        raise KeyError("a bug, not a user error")

    @friendly_errors
    def missing():
        open("/nonexistent/dir/file.wav")

    with pytest.raises(typer.Exit) as exc:
        bad_input()
    assert exc.value.exit_code == 2
    with pytest.raises(typer.Exit):
        missing()
    with pytest.raises(KeyError):
        bug()
    assert issubclass(InputError, ValueError) and issubclass(InputError, ConvfeatError)


def _imports(path: Path) -> set[str]:
    """Absolute names of the modules a convfeat module imports, anywhere in it (lazy imports too)."""
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    package = list(rel.parts[:-1])          # the package a relative import starts from
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            out.add(mod)
            out |= {f"{mod}.{a.name}" for a in node.names}
    return out


def _room_imports(room: str) -> dict[str, set[str]]:
    return {str(p.relative_to(PACKAGE)): _imports(p) for p in sorted((PACKAGE / room).rglob("*.py"))}


@pytest.mark.parametrize("room, forbidden", [
    ("evaluation", ("torch", "convfeat.models", "convfeat.cli", "h5py", "convfeat.extraction")),
    ("store", ("torch", "convfeat.models", "convfeat.cli", "convfeat.evaluation", "convfeat.extraction")),
    ("audio", ("torch", "convfeat.models", "convfeat.cli", "convfeat.store", "convfeat.extraction")),
    ("models", ("convfeat.cli", "convfeat.store", "convfeat.extraction", "convfeat.evaluation")),
    ("extraction", ("convfeat.cli", "convfeat.evaluation")),
    ("datasets", ("torch", "convfeat.models", "convfeat.cli")),
])
def test_rooms_import_only_what_the_data_flow_allows(room, forbidden):
    bad = {f: sorted(m for m in mods if any(m == x or m.startswith(x + ".") for x in forbidden))
           for f, mods in _room_imports(room).items()}
    assert not {f: m for f, m in bad.items() if m}, bad


def test_the_core_never_imports_the_cli():
    offenders = {}
    for p in PACKAGE.rglob("*.py"):
        if "cli" in p.relative_to(PACKAGE).parts or p.name == "__main__.py":   # `python -m convfeat` is the CLI
            continue
        hits = sorted(m for m in _imports(p) if m == "convfeat.cli" or m.startswith("convfeat.cli."))
        if hits:
            offenders[str(p.relative_to(PACKAGE))] = hits
    assert not offenders, offenders


def test_every_shared_constant_is_defined_once():
    import convfeat.constants as constants

    shared = {name for name in vars(constants) if name.isupper()}
    twice = {}
    for p in PACKAGE.rglob("*.py"):
        if p.name == "constants.py":
            continue
        for node in ast.parse(p.read_text()).body:
            targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
            for t in targets:
                if isinstance(t, ast.Name) and t.id in shared:
                    twice.setdefault(t.id, []).append(str(p.relative_to(PACKAGE)))
    assert not twice, f"defined again outside convfeat/constants.py: {twice}"
