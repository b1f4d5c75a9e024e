"""Provider registry (models/registry.py), the factory on top of it, and where base types live."""

import ast
import importlib.metadata
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from proofloop.errors import UserInputError
from proofloop.models.factory import ModelSettings, build_provider
from proofloop.models.registry import (BUILTIN_FACTORIES, provider_factory, provider_names, register_provider,
                                       unregister_provider)

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "proofloop"


def test_builtin_names_resolve_to_factories():
    assert {"openai", "local", "sim"} <= set(provider_names())
    sim = provider_factory("sim")(ModelSettings(provider="sim", max_n=3, sim_seed=5), api_key=None,
                                  timeouts=None, notice=print)
    assert (sim.name, sim.max_n) == ("sim", 3)


def test_unknown_provider_is_a_user_error_listing_the_names():
    with pytest.raises(UserInputError) as e:
        provider_factory("vllm-magic")
    assert "vllm-magic" in str(e.value) and "openai, " in str(e.value) and "sim" in str(e.value)
    with pytest.raises(UserInputError) as e:
        ModelSettings(provider="vllm-magic").resolved()
    assert "registered providers" in str(e.value) and "local" in str(e.value)


def test_a_registered_provider_is_built_by_name():
    class Fake:
        name, model, max_n = "fake", "fake-1", None

        def __init__(self, settings, api_key):
            self.settings, self.api_key = settings, api_key

    register_provider("fake-for-test", lambda settings, *, api_key, timeouts, notice: Fake(settings, api_key))
    try:
        settings, key = ModelSettings(provider="fake-for-test", model="x").resolved("k")
        provider = build_provider(settings, key)
        assert isinstance(provider, Fake) and provider.api_key == "k" and provider.settings.model == "x"
        assert "fake-for-test" in provider_names()
    finally:
        unregister_provider("fake-for-test")
    assert "fake-for-test" not in provider_names()


def test_pyproject_declares_the_same_entry_points_as_the_builtin_table():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["entry-points"]["proofloop.providers"] == BUILTIN_FACTORIES


def test_stale_entry_point_falls_back_to_the_builtin_and_new_ones_are_found(monkeypatch):
    stale = importlib.metadata.EntryPoint("sim", "proofloop.sim.old_module:gone", "proofloop.providers")
    added = importlib.metadata.EntryPoint("echo-ep", "proofloop.sim.provider:provider_from_settings",
                                          "proofloop.providers")
    monkeypatch.setattr(importlib.metadata, "entry_points",
                        lambda group=None: [stale, added] if group == "proofloop.providers" else [])
    from proofloop.sim.provider import provider_from_settings

    assert provider_factory("sim") is provider_from_settings
    assert provider_factory("echo-ep") is provider_from_settings and "echo-ep" in provider_names()


def _imported_modules(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


def test_model_layer_never_imports_the_simulator():
    for path in (SRC / "models").glob("*.py"):
        assert not any(m.startswith("proofloop.sim") for m in _imported_modules(path)), path
    assert "proofloop.sim" not in (SRC / "models" / "factory.py").read_text()


def test_building_an_openai_provider_loads_no_simulator_module():
    code = ("import sys\n"
            "from proofloop.models.factory import ModelSettings, build_provider\n"
            "p = build_provider(ModelSettings(provider='openai', base_url='http://127.0.0.1:9/v1', model='m'))\n"
            "assert p.name == 'openai', p\n"
            "print(sorted(m for m in sys.modules if m.startswith('proofloop.sim')))\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_base_types_live_in_base():
    from proofloop.models import base, wrapper

    for name in ("Message", "Timeouts", "RetryPolicy", "Usage"):
        assert hasattr(base, name)
    assert wrapper.Timeouts is base.Timeouts and wrapper.RetryPolicy is base.RetryPolicy
    for path in (SRC / "models").glob("*.py"):  # the model layer imports them from base only
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module == "proofloop.models.wrapper":
                assert not {"Timeouts", "RetryPolicy", "Message"} & {a.name for a in node.names}, path


def test_entry_points_are_read_once_until_something_is_installed(monkeypatch, tmp_path):
    # A run looks providers and packs up several times: the metadata of every installed
    # distribution was read each time (milliseconds each, most of a one-pair /v1/verify).
    from proofloop.extras import declared_entry_points

    reads = []
    added = importlib.metadata.EntryPoint("echo-ep", "proofloop.sim.provider:provider_from_settings",
                                          "proofloop.providers")

    def entry_points(group=None):
        reads.append(group)
        return [added] if group == "proofloop.providers" else []

    monkeypatch.setattr(importlib.metadata, "entry_points", entry_points)
    builtins = {"sim": "proofloop.sim.provider:provider_from_settings"}
    assert declared_entry_points("proofloop.providers", builtins) == {**builtins, "echo-ep": added.value}
    for _ in range(3):
        provider_factory("echo-ep")
        assert "echo-ep" in provider_names()
    assert reads == ["proofloop.providers"]
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.setattr(sys, "path", [*sys.path, str(site)])  # a folder added to the path: read again
    provider_names()
    (site / "x-1.0.dist-info").mkdir()  # something installed into it: read again
    provider_names()
    provider_names()
    assert reads == ["proofloop.providers"] * 3
