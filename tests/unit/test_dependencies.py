"""Dependencies: every import is pinned, every pin is used, and the hash locks match the pins.

requirements.txt and requirements-dev.txt are the files people edit;
requirements.lock and requirements-dev.lock (`make lock`) are what gets installed.
requirements-nodeps.txt and requirements-dev-nodeps.txt name the packages
installed without their declared dependencies (from their locks, `pip install
--no-deps`): for the application silero-vad's model files, whose declared torch
is never installed; for a benchmark pipecat-ai's Smart Turn files.
"""

from __future__ import annotations

import ast
import functools
import re
import sys
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
APPLICATION_CODE = ("accounts", "chat", "fakeai", "realtime", "realtime_site", "rooms", "voice")
DEV_CODE = ("tests", "bench")

# Pinned though no code imports them, and why.
USED_WITHOUT_IMPORT = {
    "daphne": "the server: python -m daphne, and INSTALLED_APPS",
    "channels-redis": "the channel layer backend named in settings",
    "hiredis": "redis-py's C reply parser, used automatically when installed",
    "whitenoise": "middleware named in settings",
    "psycopg": "Django's PostgreSQL driver",
    "psycopg-pool": "the PostgreSQL connection pool Django opens (OPTIONS pool in settings)",
    "pytest-django": "pytest plugin",
    "pytest-timeout": "pytest plugin",
    "ruff": "the linter (make lint)",
    "uv": "writes the locks (make lock)",
}

RELOCK = "run `make lock` after changing requirements*.txt"
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==([^\s;\\]+)", re.MULTILINE)


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(filename: str) -> dict[str, str]:
    """{package: version} pinned in a requirements or lock file (not following -r)."""
    text = (ROOT / filename).read_text()
    return {normalized(name): version for name, version in _PIN.findall(text)}


# Packages installed without their dependencies, by requirements file, and the file
# that uses each by name (the application's in application code).
NO_DEPS_USED_BY = {
    "requirements-nodeps.txt": {"silero-vad": "voice/vad.py"},
    "requirements-dev-nodeps.txt": {"pipecat-ai": "bench/turn_bench.py"},
}
NO_DEPS_LOCKS = ["requirements-nodeps.lock", "requirements-dev-nodeps.lock"]

RUNTIME_PINS = pins("requirements.txt")
DEV_PINS = {**RUNTIME_PINS, **pins("requirements-dev.txt")}


def third_party_imports(*top_dirs: str) -> dict[str, set[str]]:
    """{top-level module: files importing it} for the third-party imports under these folders."""
    first_party = {path.stem for path in ROOT.iterdir() if path.suffix == ".py" or path.is_dir()}
    found: dict[str, set[str]] = {}
    for top in top_dirs:
        for path in (ROOT / top).rglob("*.py"):
            for module in _top_level_imports(path):
                if module not in sys.stdlib_module_names and module not in first_party:
                    found.setdefault(module, set()).add(str(path.relative_to(ROOT)))
    return found


def distributions_of(module: str) -> set[str]:
    """The installed packages providing a module (several may: autobahn adds a twisted plugin)."""
    return {normalized(name) for name in _owners().get(module, [])}


@functools.cache
def _owners() -> dict[str, list[str]]:
    return packages_distributions()


def unpinned(imports: dict[str, set[str]], pinned: dict[str, str]) -> dict[str, set[str]]:
    return {
        module: files
        for module, files in imports.items()
        if not distributions_of(module) & pinned.keys()
    }


def used(imports: dict[str, set[str]]) -> set[str]:
    return set().union(*map(distributions_of, imports)) | USED_WITHOUT_IMPORT.keys()


def _top_level_imports(path: Path) -> set[str]:
    modules = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            modules.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules.add(node.module.split(".")[0])
    return modules


# --- the inputs -------------------------------------------------------------------------
def test_every_package_the_application_imports_is_pinned_in_requirements_txt():
    assert unpinned(third_party_imports(*APPLICATION_CODE), RUNTIME_PINS) == {}


def test_every_package_tests_and_benchmarks_import_is_pinned():
    assert unpinned(third_party_imports(*DEV_CODE), DEV_PINS) == {}


def test_every_runtime_pin_is_imported_by_the_application_or_used_by_name():
    assert set(RUNTIME_PINS) - used(third_party_imports(*APPLICATION_CODE)) == set()


def test_every_dev_pin_is_imported_by_tests_or_benchmarks_or_used_by_name():
    dev_only = set(pins("requirements-dev.txt"))
    assert dev_only - used(third_party_imports(*DEV_CODE)) == set()


# --- the locks --------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("lock", "pinned"),
    [("requirements.lock", RUNTIME_PINS), ("requirements-dev.lock", DEV_PINS)],
    ids=["application", "dev"],
)
def test_the_lock_holds_every_pin_at_its_version(lock, pinned):
    locked = pins(lock)
    differing = {name: (version, locked.get(name)) for name, version in pinned.items()}
    assert {k: v for k, v in differing.items() if v[0] != v[1]} == {}, RELOCK


def test_the_dev_lock_installs_the_application_lock_unchanged():
    application, dev = pins("requirements.lock"), pins("requirements-dev.lock")
    assert {name: dev.get(name) for name in application} == application, RELOCK


@pytest.mark.parametrize("requirements", list(NO_DEPS_USED_BY))
def test_a_no_deps_lock_holds_exactly_its_pins(requirements):
    lock = requirements.replace(".txt", ".lock")

    assert pins(lock) == pins(requirements), RELOCK


@pytest.mark.parametrize("requirements", list(NO_DEPS_USED_BY))
def test_every_no_deps_package_is_used_by_name_and_in_no_other_lock(requirements):
    nodeps = pins(requirements)

    assert set(nodeps) == set(NO_DEPS_USED_BY[requirements])
    for name, user in NO_DEPS_USED_BY[requirements].items():
        assert f'"{name}"' in (ROOT / user).read_text()
    assert set(nodeps) & set(pins("requirements-dev.lock")) == set()


def test_the_applications_no_deps_packages_are_used_by_application_code():
    users = NO_DEPS_USED_BY["requirements-nodeps.txt"].values()

    assert all(user.split("/")[0] in APPLICATION_CODE for user in users)


def test_no_lock_installs_torch():
    for lock in ["requirements.lock", "requirements-dev.lock", *NO_DEPS_LOCKS]:
        assert "torch" not in pins(lock)


@pytest.mark.parametrize("lock", ["requirements.lock", "requirements-dev.lock", *NO_DEPS_LOCKS])
def test_every_locked_package_has_a_hash(lock):
    entries = re.split(r"\n(?=[A-Za-z0-9])", (ROOT / lock).read_text().split("\n", 2)[2])
    unhashed = [entry.split()[0] for entry in entries if "--hash=sha256:" not in entry]
    assert len(entries) == len(pins(lock))
    assert unhashed == []
