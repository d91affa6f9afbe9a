"""Webhook signing (pure, fake time) and the local CRM receiver (loopback, bounded waits)."""
import json
import time
import urllib.error
import urllib.request

import pytest

from server.delivery.signing import DELIVERY_HEADER, SIGNATURE_HEADER, sign, verify
from sim.crm_receiver import CrmReceiver

SECRET = "whsec_test"
BODY = json.dumps({"name": "דנה", "phone": "+972501234567"}, ensure_ascii=False).encode("utf-8")
NOW_S = 1_700_000_000


# -- signing -------------------------------------------------------------------------------------

def test_round_trip_and_header_shape():
    header = sign(SECRET, BODY, NOW_S)
    assert header.startswith(f"t={NOW_S},v1=") and len(header.split("v1=")[1]) == 64
    assert verify(SECRET, BODY, header, now_s=NOW_S)
    assert verify(SECRET, BODY, header, now_s=NOW_S + 300)     # the tolerance is inclusive


def test_wrong_secret_and_tampered_body_fail():
    header = sign(SECRET, BODY, NOW_S)
    assert not verify("whsec_other", BODY, header, now_s=NOW_S)
    assert not verify(SECRET, BODY + b" ", header, now_s=NOW_S)
    assert not verify(SECRET, BODY, header.replace(f"t={NOW_S}", f"t={NOW_S + 1}"), now_s=NOW_S)


def test_stale_and_future_timestamps_fail():
    header = sign(SECRET, BODY, NOW_S)
    assert not verify(SECRET, BODY, header, now_s=NOW_S + 301)
    assert not verify(SECRET, BODY, header, now_s=NOW_S - 301)
    assert verify(SECRET, BODY, header, now_s=NOW_S + 50, tolerance_s=60)
    assert not verify(SECRET, BODY, header, now_s=NOW_S + 61, tolerance_s=60)


@pytest.mark.parametrize("header", [
    None, "", "garbage", "t=,v1=", "v1=abc", f"t={NOW_S}", f"t=abc,v1={'0' * 64}", "t=1e9,v1=00",
    f"t=-{NOW_S},v1=00", f"t={'9' * 5000},v1=00", "t=١٢٣,v1=00", "=,=,,", "v1=é", 12345, b"t=1,v1=00",
])
def test_garbage_headers_are_false_never_raise(header):
    assert verify(SECRET, BODY, header, now_s=NOW_S) is False


def test_tolerates_whitespace_unknown_parts_and_rotation():
    good = sign(SECRET, BODY, NOW_S).split("v1=")[1]
    old = sign("whsec_old", BODY, NOW_S).split("v1=")[1]
    assert verify(SECRET, BODY, f" t = {NOW_S} , v0=zzz, v1 = {good} ,x=1", now_s=NOW_S)
    rotated = f"t={NOW_S},v1={old},v1={good}"
    assert verify(SECRET, BODY, rotated, now_s=NOW_S)
    assert verify("whsec_old", BODY, rotated, now_s=NOW_S)
    assert not verify("whsec_third", BODY, rotated, now_s=NOW_S)


def test_ambiguous_or_empty_inputs():
    header = sign(SECRET, BODY, NOW_S)
    assert not verify(SECRET, BODY, f"t={NOW_S - 1},{header}", now_s=NOW_S)   # two timestamps
    assert not verify("", BODY, header, now_s=NOW_S)
    assert not verify(SECRET, "not bytes", header, now_s=NOW_S)
    with pytest.raises(ValueError):
        sign("", BODY, NOW_S)
    with pytest.raises(ValueError):
        sign(SECRET, BODY, -1)


# -- receiver on loopback ------------------------------------------------------------------------

def _post(url, body, delivery_id="d-1", secret=SECRET, timestamp_s=None, signature=None):
    headers = {"Content-Type": "application/json"}
    if delivery_id is not None:
        headers[DELIVERY_HEADER] = delivery_id
    headers[SIGNATURE_HEADER] = signature if signature is not None else sign(
        secret, body, int(time.time()) if timestamp_s is None else timestamp_s)
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=2) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        with err:
            return err.code, json.loads(err.read())


@pytest.fixture
def crm():
    receiver = CrmReceiver(SECRET).start()
    yield receiver
    receiver.stop()


def test_accepted_lead_is_stored(crm):
    assert crm.url == f"http://127.0.0.1:{crm.port}/leads"
    assert _post(crm.url, BODY, delivery_id="d-42") == (200, {"ok": True})
    assert crm.wait_for(1, timeout_s=1)
    [record] = crm.received
    assert record["delivery_id"] == "d-42"
    assert record["payload"] == {"name": "דנה", "phone": "+972501234567"}
    assert abs(record["received_at_s"] - time.time()) < 5
    assert (crm.attempts, crm.rejected, crm.duplicates) == (1, 0, 0)


def test_bad_missing_or_stale_signature_is_401(crm):
    assert _post(crm.url, BODY, secret="whsec_wrong")[0] == 401
    assert _post(crm.url, BODY, signature="")[0] == 401
    assert _post(crm.url, BODY, timestamp_s=int(time.time()) - 3600)[0] == 401
    assert (crm.attempts, crm.rejected, crm.received) == (3, 3, [])
    assert not crm.wait_for(1, timeout_s=0.05)


def test_down_is_503_then_up_is_200(crm):
    crm.set_down()
    assert _post(crm.url, BODY) == (503, {"ok": False, "error": "down"})
    crm.set_up()
    assert _post(crm.url, BODY)[0] == 200
    assert crm.attempts == 2 and len(crm.received) == 1


def test_refuse_mode_then_up_on_the_same_port(crm):
    assert _post(crm.url, BODY, delivery_id="before")[0] == 200
    port = crm.port
    crm.set_down(refuse=True)
    with pytest.raises(urllib.error.URLError) as err:
        _post(crm.url, BODY, delivery_id="during")
    assert isinstance(err.value.reason, ConnectionRefusedError)
    crm.set_up()
    assert crm.port == port
    assert _post(crm.url, BODY, delivery_id="after")[0] == 200
    assert [r["delivery_id"] for r in crm.received] == ["before", "after"]
    assert crm.attempts == 2   # the refused one never reached us


def test_duplicate_delivery_is_acknowledged_but_stored_once(crm):
    assert _post(crm.url, BODY, delivery_id="same")[0] == 200
    assert _post(crm.url, BODY, delivery_id="same") == (200, {"ok": True, "duplicate": True})
    assert len(crm.received) == 1 and crm.duplicates == 1 and crm.attempts == 2


def test_non_json_body_or_missing_delivery_id_is_400(crm):
    assert _post(crm.url, b"\xff not json")[0] == 400
    assert _post(crm.url, BODY, delivery_id=None)[0] == 400
    assert crm.received == [] and crm.rejected == 0
