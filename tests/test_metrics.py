"""Prometheus metrics: a real daemon, real mail, a real scrape of /metrics."""

from __future__ import annotations

import urllib.request
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import free_port, make_mail, wait_until


def _scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_counts_from_every_process_and_queues_from_the_database(daemon_factory: Any) -> None:
    port = free_port()
    daemon = daemon_factory(
        listen={"metrics": {"host": "127.0.0.1", "port": port}}, instance={"name": "alpha"}
    )
    first = make_mail(message_id="<m1@example.org>")
    daemon.send(first)
    daemon.send(make_mail(message_id="<m2@example.org>", subject="Second problem"))
    daemon.send(first)  # delivered twice: one article, no second acknowledgement
    wait_until(lambda: len(daemon.acks()) == 2, timeout=15)

    def settled() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        found = _scrape(port)
        done = found.get(("mailgate_deliveries_total", (("result", "sent"),)), 0)
        return found if done == 2 else {}

    metrics = wait_until(settled, timeout=15)
    # Listener (the daemon), processing and delivery (two worker processes), summed.
    assert 3 == metrics[("mailgate_smtp_messages_total", (("listener", "smtp"), ("result", "accepted")))]
    assert 2 == metrics[("mailgate_processed_messages_total", (("state", "done"),))]
    assert 1 == metrics[("mailgate_processed_messages_total", (("state", "duplicate"),))]
    assert 3 == metrics[("mailgate_processing_delay_seconds_count", ())]
    assert 2 == metrics[("mailgate_delivery_delay_seconds_count", ())]
    # Read from the database at scrape time.
    assert 3 == metrics[("mailgate_inbound_messages", (("state", "done"),))]
    assert 2 == metrics[("mailgate_outbox_messages", (("state", "sent"),))]
    assert 2 == metrics[("mailgate_tickets", (("status", "new"),))]
    assert 0 == metrics[("mailgate_oldest_pending_seconds", ())]
    assert 1 == metrics[("mailgate_workers_alive", (("role", "processing"),))]
    assert 1 == metrics[("mailgate_workers_alive", (("role", "delivery"),))]
    # The instances on the database (docs/scale-out.md): this one, live, holding the timers.
    assert 1 == metrics[("mailgate_instances", (("state", "live"),))]
    assert 1 == metrics[("mailgate_role_held", (("instance", "alpha"), ("role", "timers")))]
    ages = [v for (name, _), v in metrics.items() if name == "mailgate_instance_heartbeat_age_seconds"]
    assert len(ages) == 1 and 0 <= ages[0] < 6
    assert 0 == daemon.stop()


def test_without_a_metrics_listener_nothing_listens(daemon_factory: Any) -> None:
    daemon = daemon_factory()
    assert not [line for line in daemon.lines if line.get("event") == "metrics.listening"]
    assert 0 == daemon.stop()
