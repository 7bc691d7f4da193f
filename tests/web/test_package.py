"""The npm package as a consumer gets it: `npm pack`, unpacked into a fresh project, then `import`
and `require` of both entries in Node, and `tsc` with moduleResolution node, node16 and bundler.

Nothing is downloaded: the tarball is unpacked where `npm install` would put it, and the peers
(react, livekit-client, their types, typescript) are linked from web/node_modules.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from tests.livekit_server import in_ci

ROOT = Path(__file__).resolve().parents[2]
WEB = ROOT / "web"
PEERS = ("react", "react-dom", "livekit-client", "@types/react", "typescript")
pytestmark = pytest.mark.timeout(300)


def need_built_web() -> None:
    missing = [
        what
        for what, ok in (
            ("node", shutil.which("node") is not None),
            ("npm", shutil.which("npm") is not None),
            ("web/node_modules (scripts/web.sh build)", (WEB / "node_modules").is_dir()),
            ("web/dist/cjs (scripts/web.sh build)", (WEB / "dist/cjs/react/index.js").is_file()),
        )
        if not ok
    ]
    if missing:
        reason = "the package test needs " + ", ".join(missing)
        if in_ci():
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)


def run(args: list[str], cwd: Path) -> str:
    done = subprocess.run(args, cwd=cwd, capture_output=True, text=True, check=False)
    assert done.returncode == 0, f"{' '.join(args)}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


CONSUMER_TS = """
import { createAtlasClient, type AtlasState, type AtlasClient } from "atlas-avatar";
import { useAtlasSession, type AtlasSession, type TranscriptMessage } from "atlas-avatar/react";

export const make: (o: { createSession: () => Promise<{}> }) => AtlasClient = createAtlasClient;
export const hook: typeof useAtlasSession = useAtlasSession;
export const role: TranscriptMessage["role"] = "agent";
export type Both = [AtlasState["status"], AtlasSession["status"]];
"""

TSCONFIGS = {
    "node": {"module": "commonjs", "moduleResolution": "node"},
    "node16": {"module": "node16", "moduleResolution": "node16"},
    "bundler": {"module": "esnext", "moduleResolution": "bundler"},
}


@pytest.fixture(scope="module")
def consumer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    need_built_web()
    out = tmp_path_factory.mktemp("pack")
    # --ignore-scripts: `prepare` already built dist (scripts/web.sh build); pack what is there
    packed = json.loads(
        run(["npm", "pack", "--json", "--ignore-scripts", "--pack-destination", str(out)], WEB)
    )
    tarball = out / packed[0]["filename"]
    name = packed[0]["name"]
    assert name == "atlas-avatar"
    project = out / "consumer"
    target = project / "node_modules" / name
    target.mkdir(parents=True)
    with tarfile.open(tarball) as tar:
        tar.extractall(out / "unpacked", filter="data")
    shutil.copytree(out / "unpacked" / "package", target, dirs_exist_ok=True)
    for peer in PEERS:
        link = project / "node_modules" / peer
        link.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(WEB / "node_modules" / peer, link)
    (project / "package.json").write_text('{ "name": "consumer", "private": true }\n')
    return project


def test_the_tarball_holds_both_builds_and_no_tests(consumer: Path) -> None:
    package = consumer / "node_modules" / "atlas-avatar"
    for entry in ("core", "react"):
        for build in ("lib", "cjs"):
            assert (package / "dist" / build / entry / "index.js").is_file()
            assert (package / "dist" / build / entry / "index.d.ts").is_file()
    assert json.loads((package / "dist/cjs/package.json").read_text()) == {"type": "commonjs"}
    assert not (package / "test").exists() and not (package / "demo").exists()
    # the React entry is a client module for Next.js's app router, in both builds
    for build in ("lib", "cjs"):
        head = (package / "dist" / build / "react" / "index.js").read_text().splitlines()[:2]
        assert '"use client";' in head, (build, head)


def test_import_and_require_both_entries(consumer: Path) -> None:
    check = """
      const core = await import("atlas-avatar");
      const react = await import("atlas-avatar/react");
      const require = (await import("node:module")).createRequire(process.cwd() + "/");
      const coreCjs = require("atlas-avatar");
      const reactCjs = require("atlas-avatar/react");
      console.log(JSON.stringify([typeof core.createAtlasClient, typeof react.useAtlasSession,
        typeof coreCjs.createAtlasClient, typeof reactCjs.useAtlasSession]));
    """
    out = run(["node", "--input-type=module", "-e", check], consumer)
    assert json.loads(out.strip().splitlines()[-1]) == ["function"] * 4


@pytest.mark.parametrize("resolution", sorted(TSCONFIGS))
def test_typescript_resolves_both_entries(consumer: Path, resolution: str) -> None:
    (consumer / "index.ts").write_text(CONSUMER_TS)
    files = ["index.ts"]
    if resolution == "node16":  # an ES module too: the import condition's types
        (consumer / "index.mts").write_text(CONSUMER_TS)
        files.append("index.mts")
    config = {
        "compilerOptions": {
            **TSCONFIGS[resolution],
            "target": "es2022",
            "strict": True,
            "noEmit": True,
            # as every app template sets: livekit-client's own .d.ts files do not check alone
            "skipLibCheck": True,
            "jsx": "react-jsx",
            "lib": ["es2022", "dom"],
            "types": [],
        },
        "files": files,
    }
    (consumer / f"tsconfig.{resolution}.json").write_text(json.dumps(config))
    tsc = str(WEB / "node_modules" / "typescript" / "bin" / "tsc")
    run(["node", tsc, "-p", f"tsconfig.{resolution}.json"], consumer)
