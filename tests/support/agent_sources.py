"""Agent sources the analysis tests read: the seed's own agent, where it lives beside the
checkout (never copied into the repository), and a small agent written for the tests with
every kind of site the seed describes."""

from __future__ import annotations

import textwrap
from pathlib import Path

_REPO = Path(__file__).resolve().parents[2]


def _seed_agent() -> Path:
    """`shared/seed/model_manager_agent.py` in the nearest directory above the checkout
    that has one: /work/shared beside /work/main, and beside a worktree's parent too."""
    for above in _REPO.parents:
        found = above / "shared" / "seed" / "model_manager_agent.py"
        if found.is_file():
            return found.resolve()  # the path migrate itself prints
    return _REPO.parent / "shared" / "seed" / "model_manager_agent.py"  # named when missing


SEED = _seed_agent()

AGENT = textwrap.dedent('''\
    import socket
    import threading
    import threading as th
    from threading import Thread
    from threading import Thread as T

    import zmq

    from common.core.base_agent import BaseAgent


    class SpeechAgent(BaseAgent):
        def __init__(self, port=5570):
            super().__init__(name="SpeechAgent", port=port)
            self.context = zmq.Context()
            self.rep = self.context.socket(zmq.REP)
            self.rep.bind("tcp://*:5570")
            self.pub = self._make(zmq.PUB, 5571)
            self.subs = []
            for port in (5580, 5581):
                sub = self.context.socket(zmq.SUB)
                sub.connect(f"tcp://localhost:{port}")
                self.subs.append(sub)

        def _make(self, kind, port):
            sock = self.context.socket(kind)
            sock.bind(f"tcp://*:{port}")
            return sock

        def ask(self, address):
            req = self.context.socket(zmq.REQ)
            req.connect(address)
            return req

        def port_free(self, port):
            probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            return probe.connect_ex(("localhost", port)) != 0

        def start(self):
            threading.Thread(target=self._memory_loop, name="memory", daemon=True).start()
            th.Thread(target=self._health_check_loop).start()
            Thread(target=self._handle_requests_loop, name="requests").start()
            T(target=self._stats_loop).start()

        def _health_check_loop(self):
            pass

        def _get_health_status(self):
            return {"status": "ok"}
    ''')


def write(root: Path, rel: str, text: str) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path
