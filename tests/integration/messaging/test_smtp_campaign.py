"""An SMTP campaign end to end: List-Unsubscribe on every message, and the link suppresses."""

from __future__ import annotations

import re
from typing import Any

import httpx

from support.messaging_flow import wait_for
from support.service import ServiceProcess


def test_smtp_campaign_with_a_working_unsubscribe_link(
    server: ServiceProcess, smtp_server: Any
) -> None:
    mailbox, port = smtp_server
    with server.client() as client:
        account = client.post(
            "/api/accounts",
            json={
                "name": "mail",
                "channel": "smtp",
                "config": {
                    "host": "127.0.0.1",
                    "port": port,
                    "from": "news@example.test",
                    "username": "mailer",
                    "password": "pw-123",
                },
            },
        ).json()["id"]
        audience = client.post("/api/audiences", json={"name": "readers"}).json()["id"]
        client.post(
            f"/api/audiences/{audience}/contacts",
            json={
                "contacts": [
                    {"external_id": f"r{i}", "address": f"r{i}@readers.test"} for i in range(3)
                ]
            },
        )
        body = {
            "name": "news",
            "account_id": account,
            "audience_id": audience,
            "limit": 10,
            "subject": "Hello {{ external_id }}",
            "message": "News for {{ external_id }}. Unsubscribe: {{ unsubscribe_url }}",
        }
        first = client.post("/api/campaigns", json=body).json()["id"]
        client.post(f"/api/campaigns/{first}/start")
        assert wait_for(client, first, "completed")["sent_count"] == 3
        message = next(m for m in mailbox.messages if m["To"] == "r1@readers.test")
        assert message["Subject"] == "Hello r1"
        assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        header = "".join(message["List-Unsubscribe"].split())  # long headers arrive folded
        link = re.fullmatch(r"<(.+)>", header).group(1)  # type: ignore[union-attr]
        assert link in message.get_payload(decode=True).decode()
        path = "/" + link.split("/", 3)[3]

        forged = httpx.post(server.url + path[:-4] + "AAAA")
        assert forged.status_code == 404
        page = httpx.get(server.url + path)
        assert page.status_code == 200 and "r1@readers.test" in page.text
        done = httpx.post(server.url + path, data={"List-Unsubscribe": "One-Click"})
        assert done.status_code == 200 and "will not receive" in done.text
        suppressed = client.get("/api/suppressions").json()
        assert "r1@readers.test" in [s["address"] for s in suppressed]
        report = client.get(f"/api/campaigns/{first}/report").json()
        assert report["per_variant"]["default"]["unsubscribe"] == 1

        second = client.post("/api/campaigns", json={**body, "name": "news 2"}).json()["id"]
        client.post(f"/api/campaigns/{second}/start")
        assert wait_for(client, second, "completed")["sent_count"] == 2
    assert [m["To"] for m in mailbox.messages].count("r1@readers.test") == 1
