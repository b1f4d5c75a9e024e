"""schemathesis over `proofloop serve`'s /openapi.json (its CLI, fuzzing 8 examples per operation,
bearer token on): no request it generates, valid or not, gets a 5xx."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from support.api import ApiServer

pytest.importorskip("prometheus_client")
ST = shutil.which("st", path=str(Path(sys.executable).parent)) or shutil.which("st")
TOKEN = "schema-token"


@pytest.mark.skipif(ST is None, reason="schemathesis (the dev extra) is not installed")
def test_schemathesis_finds_no_server_error(tmp_path):
    with ApiServer(tmp_path / "db", ["--provider", "sim", "--workers", "2", "--max-tokens", "512",
                                     "--verify-max-tokens", "512"], PROOFLOOP_API_TOKENS=TOKEN) as server:
        r = subprocess.run([ST, "run", f"{server.base_url}/openapi.json", "--checks", "not_a_server_error",
                            "--phases", "fuzzing", "--max-examples", "8", "--seed", "7", "-w", "2",
                            "--request-timeout", "60", "-H", f"Authorization: Bearer {TOKEN}"],
                           capture_output=True, text=True, timeout=240, cwd=tmp_path)
        operations = sum(len(methods) for methods in httpx.get(f"{server.base_url}/openapi.json").json()["paths"].values())
        log = server.output()
    assert r.returncode == 0, r.stdout[-6000:]
    # Every operation was exercised: the API's, the reward server's, the service endpoints.
    assert operations >= 13 and " passed" in r.stdout and f"Tested: {operations}" in r.stdout
    assert '" 5' not in log, log  # uvicorn's access log: no 5xx answered
