"""A Kubernetes API server emulator for the discovery tests: kmock's `KubernetesEmulator` on 127.0.0.1.

No real API server can run on these machines, so `suanli k8s-sync` is tested against this emulator: it serves
list/get/watch of the objects a test puts in it, over real HTTP, to the official `kubernetes` client.  It runs on
an asyncio loop in a thread of the test process; a kubeconfig pointing at it is written for the commands under
test.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import kmock
import yaml

NODES = kmock.resource("", "v1", "nodes")


class KubeEmulator:
    """``with KubeEmulator() as kube: kube.put_node({...}); kube.kubeconfig(path)``."""

    def __init__(self) -> None:
        self.url = ""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._emulator: kmock.KubernetesEmulator | None = None
        self._ready = threading.Event()
        self._stopping: asyncio.Event | None = None
        self._thread = threading.Thread(target=lambda: asyncio.run(self._serve()), name="kube-emulator", daemon=True)

    async def _serve(self) -> None:
        async with kmock.KubernetesEmulator() as emulator, kmock.Server(emulator, host="127.0.0.1") as server:
            self._emulator = emulator
            self._loop = asyncio.get_running_loop()
            self._stopping = asyncio.Event()
            self.url = str(server.url).rstrip("/")
            self._ready.set()
            await self._stopping.wait()

    def __enter__(self) -> KubeEmulator:
        self._thread.start()
        if not self._ready.wait(30):
            raise RuntimeError("the Kubernetes emulator did not start within 30 s")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None and self._stopping is not None:
            self._loop.call_soon_threadsafe(self._stopping.set)
        self._thread.join(timeout=10)

    def _call(self, action: Any) -> None:
        assert self._loop is not None

        async def run() -> None:
            action()

        asyncio.run_coroutine_threadsafe(run(), self._loop).result(timeout=10)

    def put_node(self, node: dict[str, Any]) -> None:
        """Create or replace a Node object (its JSON form)."""
        assert self._emulator is not None
        emulator = self._emulator
        body = {"apiVersion": "v1", "kind": "Node", **node}

        def put() -> None:
            emulator.objects[NODES, None, node["metadata"]["name"]] = body

        self._call(put)

    def remove_node(self, name: str) -> None:
        """Delete a Node."""
        assert self._emulator is not None
        emulator = self._emulator

        def remove() -> None:
            del emulator.objects[NODES, None, name]

        self._call(remove)

    def kubeconfig(self, path: Path, token: str = "emulator-token") -> Path:
        """Write a kubeconfig whose current context is this emulator; returns its path."""
        document = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "emulator", "cluster": {"server": self.url}}],
            "users": [{"name": "tester", "user": {"token": token}}],
            "contexts": [{"name": "emulator", "context": {"cluster": "emulator", "user": "tester"}}],
            "current-context": "emulator",
        }
        path.write_text(yaml.safe_dump(document))
        return path
