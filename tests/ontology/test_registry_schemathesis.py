"""schemathesis against the live service, from its own OpenAPI document: no 5xx, with and without the token.

Needs PyPI ``schemathesis`` (not yet pinned; the test skips without it, saying so). Point
``TINYFLEET_SCHEMATHESIS`` at a ``schemathesis`` executable to use one from another venv.
Bounded: 25 examples per operation and phase, fixed seeds.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from registry_server import ServiceProcess
from test_registry_service import TOKEN


def _schemathesis() -> str | None:
    named = os.environ.get("TINYFLEET_SCHEMATHESIS")
    if named:
        return named
    beside = Path(sys.executable).with_name("schemathesis")
    return str(beside) if beside.exists() else shutil.which("schemathesis")


@pytest.mark.slow
@pytest.mark.parametrize("with_token", [False, True], ids=["anonymous", "token"])
def test_schemathesis_finds_no_server_error(tmp_path: Path, with_token: bool) -> None:
    cli = _schemathesis()
    if cli is None:
        pytest.skip("schemathesis is not installed (PyPI schemathesis; see docs/registry.md)")
    with ServiceProcess(tmp_path / "registry", TOKEN, ("--query-timeout", "2")) as service:
        url = service.start()
        args = [cli, "run", f"{url}/openapi.json", "--checks", "not_a_server_error", "--max-examples", "25",
                "--seed", "7" if with_token else "8"]
        if with_token:
            args += ["--header", f"Authorization: Bearer {TOKEN}"]
        done = subprocess.run(args, capture_output=True, text=True, timeout=600, cwd=tmp_path,  # its .schemathesis/ cache
                              env={**os.environ, "NO_COLOR": "1"})
        assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
        assert "passed" in done.stdout
        assert service.proc is not None and service.proc.poll() is None  # and the service is still up
