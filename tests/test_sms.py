"""The caller's SMS confirmation of a complete lead: through the outbox (fake time) and end to end."""
from types import SimpleNamespace

from server.delivery.outbox import OutboxWorker
from server.leads.capture import LeadSnapshot
from sim import scenario as scenario_mod
from sim.loopback import LoopbackCall
from tests.test_outbox import LEAD, URL, FakeCrm, FakeTime, store  # noqa: F401 - the shared fixture

SMS = ("+972501234567", "+97235550100", "תודה שפניתם ל-Locks: פריצת דלת ברמת גן. נחזור אליכם בהקדם.")


def sms_rows(store):
    return [d for lead in store.recent_leads() for d in lead["deliveries"] if d["delivery_id"].startswith("sms_")]


def test_one_sms_per_complete_lead_however_often_it_is_saved(store):
    partial = LeadSnapshot("partial", "פריצת דלת", None, None, None, "+972501234567", None, ("city",), {})
    store.save_lead("CA1", partial, (URL, None), sms=SMS)          # not complete yet: no SMS
    assert sms_rows(store) == []
    store.save_lead("CA1", LEAD, (URL, None), sms=SMS)
    store.save_lead("CA1", LEAD, (URL, None), sms=SMS)             # saved again at the call's end
    assert len(sms_rows(store)) == 1


def test_the_worker_texts_through_twilio_retries_and_gives_up_on_an_invalid_number(store):
    clock = FakeTime()
    answers = [SimpleNamespace(ok=False, code=None, failure="unreachable", message="ConnectionError"),
               SimpleNamespace(ok=True, code=None, failure="", message="")]
    sent = []

    def send_sms(to, from_, body):
        sent.append((to, from_, body))
        return answers.pop(0)

    worker = OutboxWorker(store, environ={}, post=FakeCrm(None, clock).post, now=lambda: clock.now,
                          send_sms=send_sms)
    store.save_lead("CA1", LEAD, (URL, None), sms=SMS)
    worker.run_once()                                              # the CRM gets its POST, the SMS fails once
    clock.advance_to_next_due(store)
    worker.run_once()
    assert sent == [SMS, SMS] and [d["status"] for d in sms_rows(store)] == ["delivered"]
    assert sms_rows(store)[0]["attempts"] == 2


def test_an_invalid_number_is_final(store):
    clock = FakeTime()
    worker = OutboxWorker(store, environ={}, post=FakeCrm(None, clock).post, now=lambda: clock.now,
                          send_sms=lambda *a: SimpleNamespace(ok=False, code=21211, failure="twilio",
                                                              message="not a valid phone number"))
    store.save_lead("CA1", LEAD, (URL, None), sms=SMS)
    worker.run_once()
    [row] = sms_rows(store)
    assert row["status"] == "dead" and "21211" in row["last_error"]


def test_a_complete_lead_sends_exactly_one_sms_from_the_business_number(tmp_path):
    with LoopbackCall(scenario_mod.load("lead_hebrew"), tmp_path / "server.log", twilio_rest=True,
                      profile_lines=("sms_on_lead = true",)) as loop:
        loop.call(max_duration_s=90)
        loop.wait_idle(timeout_s=5)
        assert loop.twilio_rest.wait_for(lambda sim: sim.messages, 10)
        found = loop.records()
        messages = loop.twilio_rest.messages
    [message] = messages
    assert (message["to"], message["from"]) == ("+972501234567", "+97235550100")
    assert "מנעולן השרון" in message["body"] and "התקנת מנעול חכם" in message["body"]
    [lead] = found["leads"]
    assert sorted(d["delivery_id"][:4] for d in lead["deliveries"]) == ["dlv_", "dlv_", "sms_"]   # lead, summary
    assert all(d["status"] == "delivered" for d in lead["deliveries"])
