"""Realistic user journeys for the reference service (locust).

    .venv/bin/locust -f bench/locustfile.py --host http://127.0.0.1:8100 \
        --headless -u 200 -r 20 -t 2m

Each simulated user registers once, logs in (bearer token), then browses (/v1/me, its items,
its sessions and audit trail) and writes (creates and edits items) with realistic weights, and
logs out at the end. Against the local stack (scripts/stack.sh) this goes through Nginx to the
3 instances; raise RATE_LIMIT_* there or every user shares the per-IP quota of 127.0.0.1.
"""

from __future__ import annotations

import uuid
from typing import Any

from locust import HttpUser, between, task


class ApiUser(HttpUser):
    wait_time = between(0.5, 2.0)

    def on_start(self) -> None:
        self.email = f"locust-{uuid.uuid4().hex[:12]}@example.com"
        creds = {"email": self.email, "password": "locust-password"}
        self.client.post("/v1/auth/register", json=creds, name="/v1/auth/register")
        r = self.client.post("/v1/auth/login", json=creds, name="/v1/auth/login")
        token = r.json().get("token", "") if r.ok else ""
        self.headers = {"Authorization": f"Bearer {token}"}
        self.items: list[int] = []

    def on_stop(self) -> None:
        self.client.post("/v1/auth/logout", headers=self.headers, name="/v1/auth/logout")

    @task(10)
    def me(self) -> None:
        self.client.get("/v1/me", headers=self.headers, name="/v1/me")

    @task(5)
    def browse_items(self) -> None:
        self.client.get("/v1/items?limit=20", headers=self.headers, name="/v1/items")

    @task(2)
    def create_item(self) -> None:
        r = self.client.post("/v1/items", json={"title": "note", "body": "from locust"},
                             headers=self.headers, name="/v1/items [POST]")
        if r.ok:
            body: dict[str, Any] = r.json()
            self.items.append(int(body["id"]))

    @task(1)
    def edit_item(self) -> None:
        if self.items:
            self.client.patch(f"/v1/items/{self.items[-1]}", json={"title": "edited"},
                              headers=self.headers, name="/v1/items/{id} [PATCH]")

    @task(1)
    def sessions_and_audit(self) -> None:
        self.client.get("/v1/sessions", headers=self.headers, name="/v1/sessions")
        self.client.get("/v1/audit?limit=10", headers=self.headers, name="/v1/audit")
