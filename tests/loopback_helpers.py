"""One whole scenario call on loopback, finished, with what the end-to-end tests read from it."""
from server.log_check import check
from sim import scenario as scenario_mod
from sim.loopback import LoopbackCall


class Finished:
    def __init__(self, loop: LoopbackCall, record, health) -> None:
        self.record, self.health = record, health
        self.counters = loop.realtime.counters
        self.log = loop.log_text()
        self.leads: list[dict] = []
        self.calls: list[dict] = []
        self.outbox: dict = {}
        self.crm_received: list[dict] = []
        self.crm_attempts = 0
        self.metrics = ""
        self.detail: dict = {}
        self.timeline_svg = b""

    def read_records(self, loop: LoopbackCall) -> None:
        found = loop.records()
        self.leads, self.outbox, self.calls = found["leads"], found["outbox"], found["calls"]
        self.crm_received, self.crm_attempts = found["crm_received"], found["crm_attempts"]
        self.metrics = loop.metrics()
        self.detail = loop.store().call_detail(self.record.call_sid) or {}
        self.timeline_svg = loop.admin_bytes(f"calls/{self.record.call_sid}/timeline.svg")

    def log_failures(self, expect: str) -> list[str]:
        """The operators' log check for one acceptance call, as readable failures."""
        return [f"{r.name}: {r.detail}" for r in check(self.log, expect) if not r.passed]


def run_scenario(tmp_path_factory, name: str, env: dict | None = None) -> Finished:
    loop = LoopbackCall(scenario_mod.load(name), tmp_path_factory.mktemp(name) / "server.log", env=env)
    with loop:
        record = loop.call(max_duration_s=90)
        health = loop.wait_idle(timeout_s=5)
        finished = Finished(loop, record, health)
        finished.read_records(loop)
    finished.log = loop.log_text()
    return finished
