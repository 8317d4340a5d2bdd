"""The running service's parts, built once from Settings and shared by API, engine and CLI."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client import CollectorRegistry

from campaignd.domain.targets import Allowlist
from campaignd.engine.guard import TargetGuard
from campaignd.engine.message_supervisor import MessageSupervisor
from campaignd.engine.supervisor import TrafficSupervisor
from campaignd.metrics import build_registry
from campaignd.settings import Settings
from campaignd.store.db import Database
from campaignd.store.messaging_repo import MessagingRepository
from campaignd.store.secrets import SecretBox, load_key
from campaignd.store.traffic_repo import TrafficRepository


@dataclass
class Services:
    settings: Settings
    db: Database
    guard: TargetGuard
    traffic: TrafficRepository
    traffic_supervisor: TrafficSupervisor
    messaging: MessagingRepository
    message_supervisor: MessageSupervisor
    metrics: CollectorRegistry = field(default_factory=CollectorRegistry)
    _box: SecretBox | None = None

    @classmethod
    def build(cls, settings: Settings) -> Services:
        db = Database(settings.database_url)
        traffic = TrafficRepository(db)
        messaging = MessagingRepository(db)
        guard = TargetGuard(Allowlist.parse(settings.allowed_targets))
        svc = cls(
            settings=settings,
            db=db,
            guard=guard,
            traffic=traffic,
            traffic_supervisor=TrafficSupervisor(traffic, settings),
            messaging=messaging,
            message_supervisor=MessageSupervisor(messaging, settings, guard),
        )
        svc.metrics = build_registry(svc)
        return svc

    @property
    def box(self) -> SecretBox:
        if self._box is None:
            raise RuntimeError("secrets are not available before the service has started")
        return self._box

    def key_file(self) -> Path:
        path = Path(self.settings.secret_key_file)
        if path.is_absolute() or self.db.is_postgres:
            return path
        database = self.db.engine.url.database
        return (Path(database).parent if database else Path.cwd()) / path

    async def start(self) -> None:
        await self.db.migrate()
        sealed = await self.messaging.sealed_secrets()
        self._box = SecretBox(load_key(self.settings.secret_key, self.key_file(), bool(sealed)))
        for token in sealed:
            self._box.open(token)  # fails at start-up, with a sentence, on the wrong key
        self.message_supervisor.box = self._box
        await self.traffic_supervisor.recover()
        await self.message_supervisor.recover()

    async def stop(self) -> None:
        await self.message_supervisor.shutdown()
        await self.traffic_supervisor.shutdown()
        await self.db.close()
