"""A webhook receiver that verifies every delivery with the Standard Webhooks reference
library (`standardwebhooks` from PyPI), as a customer's server would.

Usage: receiver.py SECRETS_FILE FAIL_FIRST
SECRETS_FILE holds a JSON object: request path to the secret of the endpoint posting there.
Prints its port, then one JSON line per request: the webhook-id, the event type, and
whether the signature verified. Answers 503 to the first FAIL_FIRST valid deliveries (to
exercise retries), 204 to later valid ones, and 400 to any whose signature does not verify.
"""

import json
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

SECRETS_FILE = sys.argv[1]
FAIL_FIRST = int(sys.argv[2])
valid_seen = 0


class Receiver(BaseHTTPRequestHandler):
    def do_POST(self):
        global valid_seen
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        headers = {k.lower(): v for k, v in self.headers.items()}
        with open(SECRETS_FILE) as f:
            secret = json.load(f).get(self.path, "whsec_")
        try:
            event = Webhook(secret).verify(body, headers)
            verified = True
        except WebhookVerificationError:
            event, verified = None, False
        if verified:
            valid_seen += 1
            status = 503 if valid_seen <= FAIL_FIRST else 204
        else:
            status = 400
        print(json.dumps({"path": self.path, "id": headers.get("webhook-id"), "type": event and event.get("type"),
                          "verified": verified, "status": status}), flush=True)
        self.send_response(status)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


server = HTTPServer(("127.0.0.1", 0), Receiver)
print(server.server_address[1], flush=True)
server.serve_forever()
