"""Keep the core pure and the response trigger single."""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FORBIDDEN = {"socket", "threading", "time", "logging", "os", "eventlet", "gevent", "asyncio", "websocket",
             "simple_websocket", "flask", "flask_sock", "subprocess", "random", "datetime", "server.green",
             "server.settings", "urllib", "requests"}


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_pure_core_imports_no_io():
    core = sorted((ROOT / "server" / "core").glob("*.py"))
    assert len(core) >= 9
    core += [ROOT / "server" / "leads" / "capture.py", ROOT / "server" / "leads" / "normalise.py",
             ROOT / "server" / "delivery" / "signing.py"]          # the lead and delivery decisions
    for path in core:
        bad = {n for n in _imports(path) if n in FORBIDDEN or n.split(".")[0] in FORBIDDEN}
        assert not bad, f"{path.name} imports {bad}"


def test_only_green_adapter_imports_eventlet():
    for path in (ROOT / "server").rglob("*.py"):
        if path.name == "green.py":
            continue
        assert not {n for n in _imports(path) if n.split(".")[0] in ("eventlet", "gevent")}, path


def test_response_create_is_sent_from_one_place_only():
    """Exactly one call site builds response.create, and it executes SendResponseCreate, which only
    ``CallCore.request_response`` (behind the guard) produces."""
    builders, producers = [], []
    for path in list((ROOT / "server").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call):
                fn = node.func
                name = fn.attr if isinstance(fn, ast.Attribute) else getattr(fn, "id", "")
                if name == "response_create":
                    builders.append(path.name)
                if name == "SendResponseCreate":
                    producers.append(path.name)
    assert builders == ["media_ws_ai.py"]
    assert producers == ["call_core.py"]
    core_src = (ROOT / "server" / "core" / "call_core.py").read_text(encoding="utf-8")
    tree = ast.parse(core_src)
    owners = [f.name for f in ast.walk(tree) if isinstance(f, ast.FunctionDef)
              and any(isinstance(n, ast.Call) and getattr(n.func, "id", "") == "SendResponseCreate" for n in ast.walk(f))]
    assert owners == ["request_response"]


def test_per_call_handler_wires_rather_than_decides():
    assert len((ROOT / "server" / "media_ws_ai.py").read_text(encoding="utf-8").splitlines()) < 600
