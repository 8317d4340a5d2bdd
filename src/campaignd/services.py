"""The running service's parts, built once from Settings and shared by API, engine and CLI."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client import CollectorRegistry

from campaignd.domain.targets import Allowlist
from campaignd.engine.engine_lock import EngineLock
from campaignd.engine.guard import TargetGuard
from campaignd.engine.message_app import MessageApp
from campaignd.engine.message_supervisor import MessageSupervisor
from campaignd.engine.node import Node, default_node_name
from campaignd.engine.supervisor import TrafficSupervisor
from campaignd.engine.traffic_app import TrafficApp
from campaignd.messaging.bounces import BounceRecorder
from campaignd.metrics import build_registry
from campaignd.settings import Settings
from campaignd.store.cluster_repo import ClusterRepository
from campaignd.store.db import Database, utcnow
from campaignd.store.messaging_repo import MessagingRepository
from campaignd.store.secrets import SecretBox, load_key
from campaignd.store.traffic_repo import TrafficRepository


@dataclass
class Services:
    settings: Settings
    db: Database
    guard: TargetGuard
    traffic: TrafficRepository
    messaging: MessagingRepository
    cluster: ClusterRepository
    traffic_app: TrafficApp
    message_app: MessageApp
    # The engine (None with --no-engine): this node's runners and its loop.
    traffic_supervisor: TrafficSupervisor | None = None
    message_supervisor: MessageSupervisor | None = None
    node: Node | None = None
    role: str = "serve"
    metrics: CollectorRegistry = field(default_factory=CollectorRegistry)
    _box: SecretBox | None = None
    _lock: EngineLock | None = None
    _presence: asyncio.Task[None] | None = None

    @classmethod
    def build(cls, settings: Settings, role: str = "serve") -> Services:
        db = Database(settings.database_url, pool_size=settings.db_pool_size)
        traffic = TrafficRepository(db)
        messaging = MessagingRepository(db)
        guard = TargetGuard(Allowlist.parse(settings.allowed_targets))
        traffic_host = message_host = node = None
        if settings.engine:
            traffic_host = TrafficSupervisor(traffic, settings)
            message_host = MessageSupervisor(messaging, settings, guard)
            node = Node(
                db, settings, traffic_host, message_host, role=role, name=settings.node_name
            )
        svc = cls(
            settings=settings,
            db=db,
            guard=guard,
            traffic=traffic,
            messaging=messaging,
            cluster=ClusterRepository(db),
            traffic_app=TrafficApp(traffic, guard, traffic_host, node),
            message_app=MessageApp(messaging, settings, guard, node=node),
            traffic_supervisor=traffic_host,
            message_supervisor=message_host,
            node=node,
            role=role,
        )
        if message_host is not None:  # a bounce this node's runners record drops the reach cache
            message_host.bounces = BounceRecorder(
                messaging, message_host.operations, svc.message_app.forget_reachable
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
        if self.node is not None and not self.db.is_postgres:
            self._lock = EngineLock(self.settings.database_url)
            self._lock.acquire()  # EngineAlreadyRunning: a second engine on one SQLite file
        await self.db.migrate()
        sealed = await self.messaging.sealed_secrets()
        self._box = SecretBox(load_key(self.settings.secret_key, self.key_file(), bool(sealed)))
        for token in sealed:
            self._box.open(token)  # fails at start-up, with a sentence, on the wrong key
        self.message_app.box = self._box
        if self.message_supervisor is not None:
            self.message_supervisor.box = self._box
        if self.node is not None:
            await self.node.start()
        else:
            self._presence = asyncio.create_task(self._heartbeats(), name="api-heartbeat")

    async def _heartbeats(self) -> None:
        """An API-only node shows in GET /api/nodes (it holds nothing)."""
        name = self.settings.node_name or default_node_name(self.role)
        started = utcnow()
        while True:
            with contextlib.suppress(Exception):
                await self.cluster.heartbeat(
                    name, self.role, False, os.getpid(), socket.gethostname(), started
                )
            await asyncio.sleep(self.settings.node_tick_seconds * 2)

    async def stop(self) -> None:
        if self.node is not None:
            await self.node.shutdown()
        elif self._presence is not None:
            self._presence.cancel()
            with contextlib.suppress(BaseException):
                await self._presence
            with contextlib.suppress(Exception):  # the database may be gone already
                await self.cluster.forget_node(
                    self.settings.node_name or default_node_name(self.role)
                )
        await self.message_app.shutdown()
        await self.db.close()
        if self._lock is not None:
            self._lock.release()
