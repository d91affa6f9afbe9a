"""One whole scenario call on loopback, finished, with what the end-to-end tests read from it."""
from server.log_check import check
from sim import scenario as scenario_mod
from sim.loopback import LoopbackCall


class Finished:
    def __init__(self, loop: LoopbackCall, record, health) -> None:
        self.record, self.health = record, health
        self.counters = loop.realtime.counters
        self.log = loop.log_text()

    def log_failures(self, expect: str) -> list[str]:
        """The operators' log check for one acceptance call, as readable failures."""
        return [f"{r.name}: {r.detail}" for r in check(self.log, expect) if not r.passed]


def run_scenario(tmp_path_factory, name: str) -> Finished:
    loop = LoopbackCall(scenario_mod.load(name), tmp_path_factory.mktemp(name) / "server.log")
    with loop:
        record = loop.call(max_duration_s=90)
        health = loop.wait_idle(timeout_s=5)
    return Finished(loop, record, health)
