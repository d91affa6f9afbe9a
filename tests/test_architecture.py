"""Keep the core pure and the response trigger single."""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FORBIDDEN = {"socket", "threading", "time", "logging", "os", "eventlet", "gevent", "asyncio", "websocket",
             "simple_websocket", "flask", "flask_sock", "subprocess", "random", "datetime", "server.green",
             "server.settings", "urllib", "requests"}


def _imports(path: Path) -> set[str]:
    """Every module a file imports: ``import x.y`` gives x.y; ``from x import y`` gives x and x.y
    (y may be a module: ``from server import green`` is an import of server.green)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names |= {f"{node.module}.{a.name}" for a in node.names}
    return names


def test_the_import_check_sees_from_imports(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text("from server import green\nfrom os import path\n", encoding="utf-8")
    assert {"server.green", "os", "os.path"} <= _imports(probe)


CORE_INTERFACE = {"handle", "next_deadline_ms", "finish"}


def test_the_shell_reads_no_core_internals():
    """The per-call handler gives the core facts and executes its verbs: it never looks inside it
    (no state, guard, flags or stats); the only ways in are the core's public interface."""
    tree = ast.parse((ROOT / "server" / "media_ws_ai.py").read_text(encoding="utf-8"))
    used = {node.attr for node in ast.walk(tree)
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute)
            and node.value.attr == "core" and isinstance(node.value.value, ast.Name) and node.value.value.id == "self"}
    assert used and used <= CORE_INTERFACE, used - CORE_INTERFACE
    aliased = [node for node in ast.walk(tree) if isinstance(node, ast.Assign)
               and isinstance(node.value, ast.Attribute) and node.value.attr == "core"
               and not any(isinstance(t, ast.Attribute) and t.attr == "core" for t in node.targets)]
    assert not aliased, "the core is not passed around under another name to read it"


def test_pure_core_imports_no_io():
    core = sorted((ROOT / "server" / "core").glob("*.py"))
    assert len(core) >= 9
    core += [ROOT / "server" / "leads" / "capture.py", ROOT / "server" / "leads" / "normalise.py",
             ROOT / "server" / "delivery" / "signing.py",           # the lead and delivery decisions
             ROOT / "server" / "web" / "timeline_svg.py", ROOT / "server" / "web" / "admin_session.py",
             ROOT / "server" / "storage" / "migrations" / "plan.py",  # the picture, sessions, upgrade plan
             ROOT / "server" / "call" / "stream_tokens.py", ROOT / "server" / "call" / "model_breaker.py"]
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
    ``CallCore._on_trigger`` (behind the guard) produces: the core's one door leads there."""
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
    assert owners == ["_on_trigger"]


def _classes(path: Path):
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ClassDef):
            yield node


def _state_of(cls: ast.ClassDef) -> set[str]:
    """The attributes a class sets in ``__init__`` plus its dataclass fields."""
    names = {f.target.id for f in cls.body if isinstance(f, ast.AnnAssign) and isinstance(f.target, ast.Name)}
    for f in cls.body:
        if isinstance(f, ast.FunctionDef) and f.name == "__init__":
            names |= {n.attr for n in ast.walk(f) if isinstance(n, ast.Attribute) and isinstance(n.ctx, ast.Store)
                      and isinstance(n.value, ast.Name) and n.value.id == "self"}
    return names


def _frozen(cls: ast.ClassDef) -> bool:
    return any(isinstance(d, ast.Call) and any(k.arg == "frozen" and getattr(k.value, "value", False)
                                               for k in d.keywords) for d in cls.decorator_list)


def test_per_call_handler_wires_rather_than_decides():
    path = ROOT / "server" / "media_ws_ai.py"
    assert len(path.read_text(encoding="utf-8").splitlines()) < 600
    [call] = [c for c in _classes(path) if c.name == "MediaCall"]
    assert call.end_lineno - call.lineno + 1 <= 350


def test_the_call_core_is_a_conductor_over_small_parts():
    """``CallCore`` routes facts to parts that own their state; no part of the core grows into a
    god object. Frozen dataclasses are values (``TurnConfig`` is the table of tuning knobs), not state."""
    [core] = [c for c in _classes(ROOT / "server" / "core" / "call_core.py") if c.name == "CallCore"]
    assert core.end_lineno - core.lineno + 1 <= 450
    assert len(_state_of(core)) <= 25
    for path in sorted((ROOT / "server" / "core").glob("*.py")):
        for cls in _classes(path):
            if not _frozen(cls):
                assert len(_state_of(cls)) <= 25, f"{path.name}:{cls.name} holds {len(_state_of(cls))} attributes"


def test_every_tool_is_a_module_and_its_spec_lives_there():
    """A tool's Realtime spec is defined in its own module of ``server/tools`` and nowhere else."""
    specs = {}
    for path in sorted((ROOT / "server").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Dict) and any(isinstance(k, ast.Constant) and k.value == "parameters"
                                                  for k in node.keys):
                specs.setdefault(path.relative_to(ROOT).as_posix(), 0)
                specs[path.relative_to(ROOT).as_posix()] += 1
    assert specs and all(p.startswith("server/tools/") and p != "server/tools/registry.py" for p in specs), specs


LAYERS = (
    # lowest first: a module imports its own layer and the ones below, never one above
    ("server.green", "server.logs", "server.log_check", "server.core", "server.business", "server.leads"),
    ("server.settings", "server.storage"),
    ("server.delivery", "server.adapters", "server.tools"),
    ("server.call",),
    ("server.media_ws_ai",),
    ("server.web",),
    ("server.app", "server.__main__"),
)


def _layer(module: str) -> int | None:
    for level, prefixes in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return level
    return None


def _module_of(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")


def test_no_import_runs_up_the_layers():
    """The layout is the architecture (README "Layout"): every server module sits in a layer, and
    imports (``import x`` and ``from x import y`` alike) only run down or sideways."""
    up = []
    for path in sorted((ROOT / "server").rglob("*.py")):
        module = _module_of(path)
        if module == "server" or "migrations.versions" in module:
            continue
        mine = _layer(module)
        assert mine is not None, f"{module} is in no layer"
        for imported in _imports(path):
            theirs = _layer(imported)
            if imported.startswith("server") and theirs is not None and theirs > mine:
                up.append(f"{module} -> {imported}")
    assert up == []


def test_the_simulators_do_not_borrow_from_the_benchmark():
    """sim/ is below bench/: the benchmark uses the simulators' line and voices, never the reverse."""
    for path in sorted((ROOT / "sim").glob("*.py")):
        assert not {n for n in _imports(path) if n.split(".")[0] == "bench"}, path.name
