"""Checks pastdue's Paddle test double and signatures with Paddle's own
Python SDK (paddle-python-sdk, in .venv).

  sdk.py api <base_url> <api_key> <kind>/<id> ...
      Reads each entity through the SDK's client pointed at the stand-in
      (the SDK parses every field it knows, so a shape Paddle would not
      send fails here); prints one JSON line per entity.
  sdk.py verify
      Reads [{"header", "body", "secrets"}] on stdin, prints the SDK
      verifier's verdict for each as a JSON list.
"""
import json
import sys
from types import SimpleNamespace

from paddle_billing import Client, Options
from paddle_billing.Notifications import Secret, Verifier


def api(base, key, refs):
    client = Client(key, options=Options(environment=SimpleNamespace(base_url=base)))
    for ref in refs:
        kind, ident = ref.split("/", 1)
        if kind == "transactions":
            t = client.transactions.get(ident)
            print(json.dumps({"id": t.id, "status": t.status.value, "customer_id": t.customer_id,
                              "grand_total": t.details.totals.grand_total,
                              "captured_at": [p.captured_at.isoformat() for p in t.payments if p.captured_at]}))
        elif kind == "subscriptions":
            s = client.subscriptions.get(ident)
            print(json.dumps({"id": s.id, "status": s.status.value, "customer_id": s.customer_id}))
        elif kind == "past_due_transactions":
            from paddle_billing.Entities.Shared import TransactionStatus
            from paddle_billing.Resources.Transactions.Operations.ListTransactions import ListTransactions
            from paddle_billing.Resources.Shared.Operations.List.Pager import Pager
            # Every page, through the SDK's own paginator.
            ids = [t.id for t in client.transactions.list(ListTransactions(Pager(per_page=int(ident)), statuses=[TransactionStatus.PastDue]))]
            print(json.dumps({"ids": ids}))
        elif kind == "customers":
            c = client.customers.get(ident)
            print(json.dumps({"id": c.id, "email": c.email, "custom_data": c.custom_data.data if c.custom_data else None}))
        else:
            raise SystemExit(f"unknown kind {kind}")


class Request:
    def __init__(self, header, body):
        self.headers = {"Paddle-Signature": header} if header is not None else {}
        self.body = body.encode("utf-8")


def verify(cases):
    verdicts = []
    for case in cases:
        secrets = [Secret(s) for s in case["secrets"]]
        try:
            ok = Verifier().verify(Request(case["header"], case["body"]), secrets)
        except (ConnectionRefusedError, ValueError):
            ok = False
        verdicts.append(bool(ok))
    print(json.dumps(verdicts))


if __name__ == "__main__":
    if sys.argv[1] == "api":
        api(sys.argv[2], sys.argv[3], sys.argv[4:])
    elif sys.argv[1] == "verify":
        verify(json.load(sys.stdin))
    else:
        raise SystemExit(__doc__)
