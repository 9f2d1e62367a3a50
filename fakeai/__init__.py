"""fakeai: a small OpenAI-wire-compatible server: chat completions and the Realtime API.

It exists so demos, tests and benchmarks can run the real ``openai`` client
against an upstream whose latency, length and failures we control precisely,
without network access, cost or nondeterminism.
"""

from fakeai.behaviour import Behaviour, Fault, resolve_behaviour
from fakeai.server import create_app

__all__ = ["Behaviour", "Fault", "create_app", "resolve_behaviour"]
