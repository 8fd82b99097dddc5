#!/usr/bin/env python3
"""A real SMTP server for klaxon's email tests (aiosmtpd).

    python3 scripts/smtp-sink.py --listen 127.0.0.1:2525 --dir /tmp/mail

Each accepted message is written to DIR as NNNNNN.json:
{"mail_from": ..., "rcpt_tos": [...], "data": "<the raw message>",
 "subject": "<decoded>", "headers": {name: value}, "parts": [{"content_type": ..., "text": "<decoded>"}]}
(Python's email package decodes the MIME parts, independently of the sender.)
(written to a temp name, then renamed, so a reader never sees half a file).

Refusals, for tests of permanent errors:
- a recipient whose local part starts with "reject" gets
  550 5.1.1 (mailbox unavailable) at RCPT;
- a message whose Subject contains "[policy-reject]" gets 554 5.7.1 at DATA.

--auth USER:PASSWORD requires AUTH (PLAIN or LOGIN, allowed without TLS:
a test server on loopback only); a wrong password gets 535.

Needs: pip install aiosmtpd. Stops on SIGTERM/SIGINT.
"""

import argparse
import itertools
import email
import email.policy
import json
import os
import signal
import threading

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


class Authenticator:
    def __init__(self, user, password):
        self.user, self.password = user.encode(), password.encode()

    def __call__(self, server, session, envelope, mechanism, auth_data):
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login == self.user
            and auth_data.password == self.password
        )
        return AuthResult(success=ok, handled=False)


class Sink:
    def __init__(self, folder):
        self.folder = folder
        self.counter = itertools.count(1)
        self.lock = threading.Lock()

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.split("@")[0].lower().startswith("reject"):
            return "550 5.1.1 <%s>: mailbox unavailable" % address
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        data = envelope.content.decode("utf-8", errors="replace")
        head = data.split("\r\n\r\n", 1)[0]
        if "[policy-reject]" in head:
            return "554 5.7.1 message refused by policy"
        with self.lock:
            n = next(self.counter)
        name = "%06d-%d.json" % (n, os.getpid())
        tmp = os.path.join(self.folder, "." + name)
        with open(tmp, "w") as f:
            msg = email.message_from_string(data, policy=email.policy.default)
            parts = [
                {"content_type": part.get_content_type(), "text": part.get_content()}
                for part in msg.walk()
                if not part.is_multipart()
            ]
            json.dump(
                {
                    "mail_from": envelope.mail_from,
                    "rcpt_tos": envelope.rcpt_tos,
                    "data": data,
                    "subject": str(msg.get("Subject", "")),
                    "headers": {k: str(v) for k, v in msg.items()},
                    "parts": parts,
                },
                f,
            )
        os.rename(tmp, os.path.join(self.folder, name))
        return "250 Message accepted for delivery"


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--listen", default="127.0.0.1:2525")
    p.add_argument("--dir", required=True)
    p.add_argument("--auth", help="USER:PASSWORD required of clients")
    a = p.parse_args()
    host, port = a.listen.rsplit(":", 1)
    os.makedirs(a.dir, exist_ok=True)
    kw = {}
    if a.auth:
        user, password = a.auth.split(":", 1)
        kw = dict(
            authenticator=Authenticator(user, password),
            auth_required=True,
            auth_require_tls=False,
        )
    c = Controller(Sink(a.dir), hostname=host, port=int(port), **kw)
    c.start()
    print("smtp-sink listening on %s:%s, writing to %s" % (host, port, a.dir), flush=True)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    done.wait()
    c.stop()


if __name__ == "__main__":
    main()
