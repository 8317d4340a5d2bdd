"""Prometheus metrics, read from the live runners at scrape time."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client.core import CollectorRegistry, CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from campaignd.services import Services


class CampaignCollector(Collector):
    def __init__(self, svc: Services) -> None:
        self.svc = svc

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        host = self.svc.traffic_supervisor
        runners = dict(host.runners) if host is not None else {}
        yield GaugeMetricFamily(
            "campaignd_traffic_runners_active", "Traffic campaigns generating now.", len(runners)
        )
        requests = CounterMetricFamily(
            "campaignd_traffic_requests",
            "Requests made by a generating campaign.",
            labels=["campaign_id", "shard", "outcome"],
        )
        rate = GaugeMetricFamily(
            "campaignd_traffic_target_rpm",
            "Target requests per minute (the campaign's, whatever the shard).",
            labels=["campaign_id", "shard"],
        )
        for (campaign_id, shard), runner in runners.items():
            totals = runner.totals
            labels = [str(campaign_id), str(shard)]
            requests.add_metric([*labels, "succeeded"], totals.succeeded)
            requests.add_metric([*labels, "failed"], totals.failed)
            requests.add_metric([*labels, "dropped"], totals.dropped)
            rate.add_metric(labels, runner.requests_per_minute)
        yield requests
        yield rate
        yield from self.extra()

    def extra(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        return iter(())


def build_registry(svc: Services) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(CampaignCollector(svc))
    return registry
