"""gevent is a one-file switch: the same normal call on ``gunicorn -k gevent`` with GREEN_BACKEND=gevent."""
from sim import scenario as scenario_mod
from sim.loopback import LoopbackCall
from sim.verdict import judge


def test_a_normal_call_on_gevent(tmp_path):
    sc = scenario_mod.load("two_turns")
    loop = LoopbackCall(sc, tmp_path / "server.log", env={"GREEN_BACKEND": "gevent"}, worker_class="gevent")
    with loop:
        record = loop.call(max_duration_s=60)
        health = loop.wait_idle(timeout_s=5)
        log = loop.log_text()
        verdict = judge(record, health, log, loop.realtime.counters, expected_utterances=2)
    assert "Using worker: gevent" in log
    assert [f"{c.name}: {c.detail}" for c in verdict if not c.passed] == []
