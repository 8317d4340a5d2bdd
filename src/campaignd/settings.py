"""All configuration in one object, read from CAMPAIGND_* environment variables."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url

DEFAULT_ALLOWED_TARGETS = "127.0.0.0/8,::1/128,localhost"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CAMPAIGND_", extra="ignore")

    database_url: str = "sqlite:///./campaignd.db"
    api_token: str | None = None
    allowed_targets: str = DEFAULT_ALLOWED_TARGETS
    # Fernet key (urlsafe base64, 32 bytes) for account secrets at rest.
    secret_key: str | None = None
    # Where a generated key is kept when CAMPAIGND_SECRET_KEY is not set.
    secret_key_file: str = "campaignd.key"
    # Where recipients reach this service, for unsubscribe and tracked links in messages.
    # Unset: the address the service is served on (http://host:port).
    public_url: str | None = None
    host: str = "127.0.0.1"
    port: int = 8080
    log_level: str = "INFO"
    # PostgreSQL only: connections a node keeps for reads and single statements, and as many
    # again past that for bursts; its pool for transactions is half that size. A node opens
    # only what it uses at once: at most 3x this.
    db_pool_size: int = Field(default=20, ge=2, le=500)
    max_body_bytes: int = Field(default=10 * 1024 * 1024, ge=1024)
    # The HTTP edge (api/edge.py): seconds a client may take to send a request's headers,
    # then its whole body; and open connections past which new ones are answered 503.
    header_timeout_seconds: float = Field(default=10.0, gt=0)
    body_timeout_seconds: float = Field(default=30.0, gt=0)
    max_connections: int = Field(default=1000, ge=1)
    # Seconds a stopping runner waits for in-flight requests before cancelling them.
    drain_seconds: float = Field(default=0.5, ge=0)
    # Worker processes per traffic campaign. 1: in the server's loop; N > 1: N processes;
    # 0: automatic, in-process up to 200 req/s, else one process per core (traffic/pool.py).
    traffic_workers: int = Field(default=0, ge=0)
    # Resume campaigns that were generating or sending when the process died.
    recover_on_start: bool = True
    # The one directory log-channel accounts may write in (their `path` is relative to it).
    # Default: `channel-logs` next to the SQLite database, else in the working directory.
    log_channel_dir: str | None = None
    # Message sending: concurrent sends per campaign and recipients claimed per batch.
    send_concurrency: int = Field(default=64, ge=1, le=1024)
    claim_batch: int = Field(default=500, ge=1, le=5000)
    # The cluster (docs/deploy.md). A node's shard leases expire this long after their last
    # renewal (a killed node's shards are taken over then); the node loop runs this often.
    lease_seconds: float = Field(default=15.0, ge=2.0, le=600.0)
    node_tick_seconds: float = Field(default=1.0, gt=0, le=10.0)
    # `campaignd worker` only: raise the process's nice value by this much at start, so a
    # worker on the same machine as `serve --no-engine` yields the CPU to the API (0: off).
    worker_nice: int = Field(default=0, ge=0, le=19)
    # This process's name in `nodes` (default: host-role-pid). Must be unique in a cluster.
    node_name: str | None = None
    # False: serve the API only (`serve --no-engine`); campaigns run on other nodes.
    engine: bool = True
    # A message campaign pauses itself after this many failed deliveries in a row (a dead
    # webhook must not burn through the audience); 0 turns it off. A campaign may set its own.
    max_consecutive_failures: int = Field(default=50, ge=0)

    def public_base(self) -> str:
        """The base URL of links in messages: CAMPAIGND_PUBLIC_URL, else the served address."""
        if self.public_url:
            return self.public_url.rstrip("/")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def channel_log_dir(self) -> Path:
        """The log channel's directory, absolute (see log_channel_dir)."""
        if self.log_channel_dir:
            return Path(self.log_channel_dir).expanduser().resolve()
        return (_sqlite_directory(self.database_url) or Path.cwd()) / "channel-logs"


def _sqlite_directory(url: str) -> Path | None:
    if not url.startswith("sqlite"):
        return None
    database = make_url(url).database
    if not database or database == ":memory:":
        return None
    return Path(database).resolve().parent


def async_database_url(url: str) -> str:
    """The SQLAlchemy async URL for a user-facing database URL."""
    if url.startswith("sqlite+aiosqlite://") or url.startswith("postgresql+asyncpg://"):
        return url
    if url.startswith("sqlite://"):
        return "sqlite+aiosqlite://" + url[len("sqlite://") :]
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url[len(prefix) :]
    return url
