"""Twilio's official Python client (`twilio` on PyPI) against the stand-in
of the Messages API in tests/common/twilio.rs: creates a message, reads it
back, and meets Twilio's errors, so the stand-in answers what the real
client sends and parses what it answers. Reads {base, sid, token, from}
as JSON on stdin; prints what the client saw as JSON."""

import json
import sys

from twilio.base.exceptions import TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client

cfg = json.load(sys.stdin)


class Local(TwilioHttpClient):
    """The client's own HTTP client, sent to the stand-in instead of
    api.twilio.com (the request is otherwise exactly the client's)."""

    def request(self, method, url, *args, **kwargs):
        return super().request(method, url.replace("https://api.twilio.com", cfg["base"]), *args, **kwargs)


client = Client(cfg["sid"], cfg["token"], http_client=Local())
out = {}
m = client.messages.create(to="+37120000000", from_=cfg["from"], body="Sveiki! Jūsu rēķins: https://app.example.com/billing/pay?t=abc")
out["created"] = {"sid": m.sid, "status": m.status, "to": m.to, "from": m.from_, "body": m.body, "num_segments": m.num_segments, "direction": m.direction}
f = client.messages(m.sid).fetch()
out["fetched"] = {"sid": f.sid, "body": f.body, "status": f.status}
out["errors"] = {}
for to in ["+15005550001", "+15005550004", "+15005550009", "not-a-number"]:
    try:
        client.messages.create(to=to, from_=cfg["from"], body="x")
        out["errors"][to] = None
    except TwilioRestException as e:
        out["errors"][to] = {"status": e.status, "code": e.code, "msg": e.msg}
try:
    Client(cfg["sid"], "wrong-token", http_client=Local()).messages.create(to="+37120000000", from_=cfg["from"], body="x")
    out["wrong_token"] = None
except TwilioRestException as e:
    out["wrong_token"] = {"status": e.status, "code": e.code}
print(json.dumps(out))
