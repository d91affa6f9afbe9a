"""Leads end to end on loopback: the real server, the simulated caller, model and CRM.

The complete Hebrew lead is checked in ``test_e2e_call.py`` (its call is shared); here: a caller
who hangs up mid-capture leaves a partial lead, and a CRM that is down while the lead is captured,
and stays down across a server restart, receives it exactly once when it comes back.
"""
import time

import pytest

from sim import scenario as scenario_mod
from sim.crm_receiver import CrmReceiver
from sim.loopback import CRM_SECRET, LoopbackCall
from tests.loopback_helpers import Finished
from tests.loopback_helpers import run_scenario


@pytest.fixture(scope="module")
def midway(tmp_path_factory) -> Finished:
    return run_scenario(tmp_path_factory, "lead_hangup_midway")


def test_hang_up_mid_capture_leaves_a_partial_lead(midway):
    assert midway.record.hung_up_by == "caller"
    assert len(midway.leads) == 1
    lead = midway.leads[0]
    assert lead["status"] == "partial"
    assert lead["service"] == "התקנת מנעול חכם" and lead["sources"]["service"] == "transcript"
    assert lead["city"] is None and lead["missing"] == ["city"]
    assert lead["phone"] == "+972501234567" and lead["sources"]["phone"] == "caller_id"
    assert lead["notes"] == "caller said: אני צריך התקנת מנעול חכם"
    assert "partial lead (missing ['city'])" in midway.log
    assert "Lead captured: True" not in midway.log


def test_the_partial_lead_is_delivered_once_and_the_call_recorded(midway):
    assert [r["payload"]["event"] for r in midway.crm_received] == ["lead.partial", "lead.summary"]
    assert midway.outbox == {"delivered": 2}
    call = midway.calls[0]
    assert call["outcome"] == "partial_lead" and call["hangup_reason"] == "caller_hung_up"
    assert call["caller"] == "+97******4567" and call["business"] == "מנעולן השרון"
    assert call["turns"] == 1 and call["latency_median_ms"] is not None
    assert ["user", "אני צריך התקנת מנעול חכם"] in call["transcript"]


def test_crm_down_then_up_gets_the_lead_exactly_once_even_across_a_restart(tmp_path):
    scenario = scenario_mod.load("lead_hebrew")
    with CrmReceiver(CRM_SECRET) as crm:
        crm.set_down(refuse=True)                                  # nothing listening on the CRM's port
        first = LoopbackCall(scenario, tmp_path / "first.log", crm=crm)
        with first:
            record = first.call(max_duration_s=90)
            assert record.hung_up_by == "server"
            time.sleep(3.0)                                        # a few retries while the CRM is down
            down = first.records(settle_s=0)
        assert down["outbox"] == {"pending": 2}                    # the lead, then the owner's summary
        delivery = down["leads"][0]["deliveries"][0]
        assert delivery["attempts"] >= 2 and "refused" in delivery["last_error"].lower()
        assert crm.received == []
        # The first server is gone; the lead waits in its database. The CRM comes back, and a new
        # server process on the same database delivers it.
        crm.set_up()
        second = LoopbackCall(scenario, tmp_path / "second.log", crm=crm, database_path=first.db_path)
        with second:
            assert crm.wait_for(2, timeout_s=30)
            time.sleep(1.0)                                        # room for a duplicate to show up
            after = second.records(settle_s=0)
        assert len(crm.received) == 2 and crm.duplicates == 0
        [lead_event] = [r for r in crm.received if r["payload"]["event"] == "lead.complete"]
        assert lead_event["payload"]["lead"]["service"] == "התקנת מנעול חכם"
        assert lead_event["delivery_id"] == delivery["delivery_id"]
        assert after["outbox"] == {"delivered": 2}


def metric(text: str, name: str) -> float:
    """The value of one sample line of a Prometheus exposition (``name`` with its labels)."""
    values = [float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name + " ")]
    assert len(values) == 1, f"{name} not exposed once"
    return values[0]


def test_the_call_shows_in_the_metrics(midway):
    m = midway.metrics
    assert metric(m, 'prosaas_calls_total{outcome="partial_lead"}') == 1
    assert metric(m, 'prosaas_leads_total{status="partial"}') == 1
    assert metric(m, "prosaas_calls_active") == 0
    assert metric(m, "prosaas_eou_delay_seconds_count") == 1          # one answered caller turn
    assert 0.2 < metric(m, "prosaas_eou_delay_seconds_sum") < 1.0
    assert metric(m, "prosaas_response_latency_seconds_count") == 1
    assert metric(m, "prosaas_response_latency_seconds_sum") > metric(m, "prosaas_eou_delay_seconds_sum")
    assert 1.0 < metric(m, "prosaas_input_audio_seconds_total") < 5.0  # one utterance with its pre-roll, not the call
    assert metric(m, 'prosaas_tx_lateness_seconds_bucket{le="+Inf"}') > 100   # the greeting and the answer, paced
    assert metric(m, "prosaas_outbox_pending") == 0 and metric(m, "prosaas_outbox_oldest_pending_seconds") == 0
    assert metric(m, "prosaas_barge_ins_total") == 0 and metric(m, "prosaas_realtime_reconnects_total") == 0
