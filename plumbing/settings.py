"""The server stack's configuration: one typed, validated settings object per process.

Values come from `PRODUCTIMON_*` environment variables, then an optional TOML file named by
`PRODUCTIMON_CONFIG`, then the defaults below, which serve the local all-in-one stack.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Callable
from email.utils import parseaddr
from functools import cached_property
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_core import PydanticCustomError
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from schemas.contract import SPOOL_MAX_AGE_DAYS


class ConfigError(Exception):
    """A configuration value is missing or invalid; the message names it."""


def _default_data_dir() -> Path:
    return Path(os.environ.get("XDG_DATA_HOME", Path.home() / ".local" / "share")) / "productimon"


def is_loopback_address(address: str) -> bool:
    """True if every `host:port` in `address` (comma-separated) names loopback: 127.0.0.0/8, ::1 or localhost."""
    hosts = []
    for item in (part.strip() for part in address.split(",")):
        host = item.rsplit(":", 1)[0] if ":" in item else item
        hosts.append(host.removeprefix("[").removesuffix("]"))
    if not hosts or not all(hosts):
        return False
    for host in hosts:
        if host.lower() == "localhost":
            continue
        try:
            if not ipaddress.ip_address(host).is_loopback:
                return False
        except ValueError:
            return False
    return True


def _require_file(refuse, variable: str, value: str, what: str) -> None:
    if not value:
        raise refuse(variable, f"required: {what} certificate")
    if not Path(value).is_file():
        raise refuse(variable, f"{value!r} is not a file; it must be {what} certificate")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PRODUCTIMON_", extra="forbid", validate_default=True)

    # Where the local stack keeps its state: warehouse data, PKI, signing keys.
    data_dir: Path = Field(default_factory=_default_data_dir)

    # Broker. "embedded" is the in-memory tansu broker of the local stack and CI; its quirks
    # (docs/design.md "Real components and how they start") change producer settings, and those changes must never
    # reach a real Kafka.
    broker_mode: Literal["embedded", "kafka"] = "embedded"
    # The broker's address (host:port); with the embedded broker a loopback address only.
    kafka_bootstrap: str = "127.0.0.1:9092"
    # The topic the gateway writes accepted batches to and the workers read.
    intervals_topic: str = "activity.intervals"
    # Records the workers refused, with the reason.
    deadletter_topic: str = "activity.deadletter"
    # Revoked devices and deleted accounts, for the workers to drop what is still in flight.
    identity_topic: str = "identity.events"
    # Partitions of the intervals topic: the most workers that can share the stream.
    topic_partitions: int = Field(default=12, ge=1, le=1024)
    # The embedded broker keeps every record in memory and never frees any: the local stack starts it
    # afresh (empty) once it holds more than this many MiB. Safe because batches are acknowledged only once
    # stored (gateway_ack_after); what it held unstored is sent again by the collectors. 0: never.
    broker_max_memory_mb: int = Field(default=150, ge=0, le=1_000_000)
    # Transport security to the broker (docs/transport-security.md). "plaintext" only for the embedded broker
    # of the local stack, which authenticates nobody and so must listen on loopback only (checked below), or a
    # development Kafka; "sasl_ssl": TLS, the broker's certificate checked against kafka_ca_file (the CA PEM
    # that signed it) and against the name in kafka_bootstrap, then a SCRAM login as kafka_username. Each
    # service has its own principal, and the broker's ACLs give it only what it needs.
    kafka_security: Literal["plaintext", "sasl_ssl"] = "plaintext"
    # With sasl_ssl: the SCRAM mechanism, this service's principal and password, and the broker's CA file.
    kafka_sasl_mechanism: Literal["SCRAM-SHA-512", "SCRAM-SHA-256"] = "SCRAM-SHA-512"
    kafka_username: str = ""
    kafka_password: str = ""
    kafka_ca_file: str = ""

    # Warehouse: the embedded server in the local stack, a real ClickHouse server in production.
    # The warehouse's HTTP endpoint.
    warehouse_host: str = "127.0.0.1"
    warehouse_port: int = Field(default=8123, ge=1, le=65535)
    # This process's own warehouse login. Locally the owner's password is generated once in
    # data_dir/warehouse.password and each service's in data_dir/warehouse.logins (docs/least-privilege.md).
    warehouse_user: str = "productimon"
    warehouse_password: str = ""
    # The database holding the tables.
    warehouse_database: str = "productimon"
    # The login for deletions (warehouse/roles.py, the "deletion" role), held by the gateway and the workers
    # beside their own; empty: deletions use the login above (one owner login, as in tests).
    warehouse_deletion_user: str = ""
    warehouse_deletion_password: str = ""
    # Raw intervals, and the daily rollup by title (the titles), are kept this many days (0: forever); sessions and
    # the hourly rollup stay.
    raw_retention_days: int = Field(default=0, ge=0, le=36500)
    # A ClickHouse cluster (a name in the servers' remote_servers) to keep the warehouse on: replicated
    # tables per shard behind Distributed tables (docs/operations.md, "ClickHouse cluster"). Empty: one server,
    # as in the local stack.
    warehouse_cluster: str = Field(default="", pattern=r"^([A-Za-z_][A-Za-z0-9_]{0,62})?$")
    # HTTPS to the warehouse (docs/transport-security.md): the server's certificate checked against
    # warehouse_ca_file and the name warehouse_host. Off for the embedded server of the local stack (loopback).
    warehouse_secure: bool = False
    warehouse_ca_file: str = ""

    # Gateway.
    # The gateway's mTLS port (ingest, certificate renewal), on this address.
    gateway_host: str = "127.0.0.1"
    gateway_port: int = Field(default=7443, ge=1, le=65535)
    # Sign-up, login and enrollment: server-authenticated TLS, for clients that have no certificate yet.
    gateway_public_port: int = Field(default=7444, ge=1, le=65535)
    # Lifetime of device certificates; collectors renew theirs over mTLS once a third is left.
    device_cert_days: int = Field(default=30, ge=1, le=366)
    # Intervals per batch before the batch is refused.
    gateway_max_batch: int = Field(default=5000, ge=1, le=100_000)
    # Addresses or networks (comma-separated) whose calls may name the client they act for in the
    # x-productimon-client-address header: the dashboard, which signs everyone in from its own address. Failed
    # sign-ins are then throttled per real client. Empty by default, trusting nobody: trusting loopback would
    # let any process on the host pick the address its guesses are counted against. The compose file names
    # the dashboard's fixed address.
    gateway_trusted_proxies: str = ""
    # gRPC server reflection (grpcurl lists and describes the services), on both ports. Off by default: it
    # maps the whole API for anyone who can connect; turn it on to debug.
    gateway_reflection: bool = False
    # How long a batch may wait for the broker before the client is told UNAVAILABLE.
    gateway_send_timeout_seconds: float = Field(default=15.0, gt=0, le=300)
    # When a batch is acknowledged (docs/design.md, "Delivery"): "stored", once the warehouse holds every
    # accepted interval of it, so the collector's spool is the durable buffer and a broker that loses its
    # data loses nothing acknowledged; "broker", once the broker holds them (a durable, replicated Kafka).
    gateway_ack_after: Literal["stored", "broker"] = "stored"
    # With ack after "stored": how long a batch may wait for the warehouse before the client is told
    # UNAVAILABLE (and sends it again): the bound on ack-to-queryable lag. New batches are refused with
    # RESOURCE_EXHAUSTED and a delay to wait (the collector's spool holds them meanwhile) once a batch has
    # waited half of it, or more than gateway_max_waiting_intervals wait at once.
    gateway_store_timeout_seconds: float = Field(default=10.0, gt=0, le=300)
    gateway_max_waiting_intervals: int = Field(default=100_000, ge=1, le=10_000_000)
    # No broker record the gateway writes is larger (a real Kafka refuses records above message.max.bytes,
    # 1 MB by default); a batch is split by size as well as by count.
    gateway_max_record_bytes: int = Field(default=1_000_000, ge=65_536, le=8_000_000)
    # The contract's time window (schemas/contract.py): an interval may have begun at most this many days
    # before it arrived. The default is the collector spool's maximum age; the worker applies it too.
    interval_max_age_days: float = Field(default=SPOOL_MAX_AGE_DAYS, gt=0, le=3650)

    # Stream worker.
    # The workers' consumer group, and the port of a worker's own web endpoint (faust).
    worker_id: str = "productimon-warehouse-writer"
    worker_port: int = Field(default=6066, ge=1, le=65535)
    # Topic records per warehouse insert; each record holds one device batch (up to 1000 intervals).
    worker_batch_records: int = Field(default=20, ge=1, le=10_000)
    # The longest wait to fill a warehouse insert.
    worker_batch_seconds: float = Field(default=0.5, gt=0, le=60)
    # One write attempt that hears nothing from the warehouse for this long fails and is retried.
    worker_write_timeout_seconds: float = Field(default=30.0, gt=0, le=600)
    # A worker reads an account's privacy choices again once they are this old (docs/privacy-rules.md); applying
    # a rule to past data waits until every worker has it.
    privacy_reload_seconds: float = Field(default=30.0, gt=0, le=600)
    # docs/design.md "Sessions": an app session survives gaps up to session_gap; a focus session, idle
    # stretches shorter than break_after.
    session_gap_seconds: float = Field(default=30, gt=0, le=3600)
    break_after_seconds: float = Field(default=300, gt=0, le=86400)

    # Metrics: Prometheus endpoints at http://<metrics_host>:<port>/metrics. 0 turns one off (the default,
    # because the local stack and the tests run several processes); set a port to expose metrics.
    metrics_host: str = "127.0.0.1"
    gateway_metrics_port: int = Field(default=0, ge=0, le=65535)
    # Each worker process needs its own port: run one worker per host or container with this set.
    worker_metrics_port: int = Field(default=0, ge=0, le=65535)
    # Log lines: "plain" text, or "json" (one object per line). Read from PRODUCTIMON_LOG_FORMAT by every
    # command; a setting so the local stack passes it on to the processes it starts.
    log_format: Literal["plain", "json"] = "plain"

    # Dashboard.
    # Where the dashboard listens (HTTPS).
    dashboard_host: str = "127.0.0.1"
    dashboard_port: int = Field(default=8501, ge=1, le=65535)
    # Lifetime of sign-in tokens.
    token_ttl_seconds: int = Field(default=8 * 3600, ge=60)
    # Cross-user insights (docs/insights.md): off unless the operator turns them on. Then the gateway releases each
    # week's figures once, differentially private, and the dashboard shows what was released.
    dashboard_aggregates: bool = False
    # A figure is shown only when its noisy count of people reaches this.
    aggregate_k: int = Field(default=10, ge=2, le=10_000)
    # The privacy budget of one figure of one week: epsilon bounds how much one person can change what is seen (each
    # outcome at most e^epsilon times likelier with them than without; 1 is conservative); delta is the chance that
    # bound may fail outright (0: never, the default).
    insights_epsilon: float = Field(default=1.0, gt=0, le=10)
    insights_delta: float = Field(default=0.0, ge=0, le=1e-3)
    # Who counts: people active on at least this many days of the 4 weeks ending with the week, as recorded live by
    # an enrolled device (not imported, not sent days later), so fresh accounts cannot make up a crowd.
    insights_min_active_days: int = Field(default=7, ge=1, le=28)

    # E-mail notices (docs/dashboard.md "Notices"): the gateway sends the goal notices and weekly summaries people
    # switch on through this SMTP server. Empty host: no e-mail is ever sent, and only desktop notices are offered.
    smtp_host: str = ""
    smtp_port: int = Field(default=587, ge=1, le=65535)
    # "starttls" (port 587): the connection is upgraded to TLS before anything is said; "tls" (port 465): TLS from
    # the start; "plaintext": only to a relay on this host (loopback). The server's certificate is always checked.
    smtp_security: Literal["starttls", "tls", "plaintext"] = "starttls"
    smtp_username: str = ""
    smtp_password: str = ""
    # A CA certificate (PEM) the SMTP server's certificate is checked against instead of the system's.
    smtp_ca_file: str = ""
    # The sender of every notice e-mail, e.g. "Productimon <notices@example.org>".
    smtp_from: str = ""
    # How often the gateway looks for e-mail notices due.
    email_every_seconds: float = Field(default=30.0, ge=1, le=3600)
    # Every e-mail's one-click unsubscribe link (RFC 8058) leads to the gateway's unsubscribe page, served over
    # HTTPS with its own certificate on this port; unsubscribe_url is where people reach it (a reverse proxy's
    # address in front of it), by default https://<gateway_host>:<unsubscribe_port>/unsubscribe.
    unsubscribe_port: int = Field(default=7445, ge=1, le=65535)
    unsubscribe_url: str = ""

    @field_validator("gateway_trusted_proxies")
    @classmethod
    def _networks(cls, value: str) -> str:
        for item in filter(None, (part.strip() for part in value.split(","))):
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ValueError(f"{item!r} is not an IP address or network") from None
        return value

    @property
    def trusted_proxy_networks(self) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        parts = (part.strip() for part in self.gateway_trusted_proxies.split(","))
        return tuple(ipaddress.ip_network(part, strict=False) for part in parts if part)

    @field_validator("data_dir")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    @model_validator(mode="after")
    def _transport(self) -> Settings:
        """Transport security that holds together (docs/transport-security.md); the error names the variable."""

        def refuse(variable: str, why: str) -> PydanticCustomError:
            return PydanticCustomError(
                "transport_security", "PRODUCTIMON_{variable}: {why}", {"variable": variable, "why": why}
            )

        if self.broker_mode == "embedded":
            # The embedded broker (tansu) authenticates nobody: only processes on this host may reach it.
            if self.kafka_security != "plaintext":
                raise refuse(
                    "KAFKA_SECURITY", "the embedded broker speaks plaintext only; sasl_ssl needs broker_mode kafka"
                )
            if not is_loopback_address(self.kafka_bootstrap):
                raise refuse(
                    "KAFKA_BOOTSTRAP",
                    f"{self.kafka_bootstrap!r} is not a loopback address; the embedded broker has no authentication, "
                    "so it may listen on 127.0.0.1, ::1 or localhost only",
                )
        if self.kafka_security == "sasl_ssl":
            for variable, value in (("KAFKA_USERNAME", self.kafka_username), ("KAFKA_PASSWORD", self.kafka_password)):
                if not value:
                    raise refuse(variable, "required with PRODUCTIMON_KAFKA_SECURITY=sasl_ssl")
            _require_file(
                refuse, "KAFKA_CA_FILE", self.kafka_ca_file, "the CA certificate (PEM) that signed the broker's"
            )
        if self.warehouse_secure:
            _require_file(
                refuse,
                "WAREHOUSE_CA_FILE",
                self.warehouse_ca_file,
                "the CA certificate (PEM) that signed the warehouse's",
            )
        self._check_email(refuse)
        return self

    def _check_email(self, refuse: Callable[[str, str], PydanticCustomError]) -> None:
        """SMTP settings that can send: a sender address, credentials in pairs, no password over plaintext."""
        if self.unsubscribe_url:
            link = urlsplit(self.unsubscribe_url)
            if link.scheme != "https" or not link.hostname or link.query or link.fragment:
                raise refuse("UNSUBSCRIBE_URL", f"{self.unsubscribe_url!r} is not an https:// address without a query")
        if not self.smtp_host:
            return
        if not re.fullmatch(r"[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\]", self.smtp_host):
            raise refuse("SMTP_HOST", f"{self.smtp_host!r} is not a host name or address")
        if not self.smtp_from:
            raise refuse("SMTP_FROM", "required with PRODUCTIMON_SMTP_HOST: the sender of the notice e-mails")
        _, sender = parseaddr(self.smtp_from)
        if "@" not in sender or sender.startswith("@") or sender.endswith("@"):
            raise refuse("SMTP_FROM", f"{self.smtp_from!r} is not an e-mail address")
        if bool(self.smtp_username) != bool(self.smtp_password):
            missing = "SMTP_PASSWORD" if self.smtp_username else "SMTP_USERNAME"
            raise refuse(missing, "SMTP_USERNAME and SMTP_PASSWORD go together")
        if self.smtp_security == "plaintext" and not is_loopback_address(f"{self.smtp_host}:{self.smtp_port}"):
            raise refuse(
                "SMTP_SECURITY",
                f"plaintext only to a relay on this host; {self.smtp_host!r} is not loopback: use starttls or tls",
            )
        if not self.unsubscribe_url and self.gateway_host in ("0.0.0.0", "::", ""):
            raise refuse(
                "UNSUBSCRIBE_URL",
                f"required with PRODUCTIMON_SMTP_HOST while the gateway listens on {self.gateway_host!r}: the address "
                "people open the e-mails' unsubscribe links at, e.g. https://stats.example.org:7445/unsubscribe",
            )
        if self.smtp_ca_file:
            what = "the CA certificate (PEM) that signed the SMTP server's"
            _require_file(refuse, "SMTP_CA_FILE", self.smtp_ca_file, what)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config_file = os.environ.get("PRODUCTIMON_CONFIG")
        if config_file:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=config_file))
        return tuple(sources)

    # Derived locations of the stack's state.
    @cached_property
    def pki_dir(self) -> Path:
        return self.data_dir / "pki"

    @cached_property
    def warehouse_dir(self) -> Path:
        return self.data_dir / "warehouse"

    @cached_property
    def keys_dir(self) -> Path:
        return self.data_dir / "keys"

    @cached_property
    def public_dir(self) -> Path:
        """What the dashboard may read of the gateway's keys: the token verification key only."""
        return self.data_dir / "public"

    @cached_property
    def identity_store_path(self) -> Path:
        return self.data_dir / "identity.sqlite3"

    @property
    def gateway_address(self) -> str:
        return f"{self.gateway_host}:{self.gateway_port}"

    @property
    def gateway_public_address(self) -> str:
        return f"{self.gateway_host}:{self.gateway_public_port}"

    @property
    def email_notices(self) -> bool:
        """Whether this server sends e-mail notices: an SMTP server is configured."""
        return bool(self.smtp_host)

    @property
    def unsubscribe_link_base(self) -> str:
        return self.unsubscribe_url or f"https://{self.gateway_host}:{self.unsubscribe_port}/unsubscribe"


def load_settings(**overrides: object) -> Settings:
    """Build the settings, turning a validation failure into one readable line."""
    config_file = os.environ.get("PRODUCTIMON_CONFIG")
    if config_file and not Path(config_file).is_file():
        raise ConfigError(f"PRODUCTIMON_CONFIG names {config_file!r}, which is not a file")
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        # A check across several settings (_transport) has no location: its message names the variable itself.
        problems = "; ".join(
            f"PRODUCTIMON_{'_'.join(str(p) for p in err['loc']).upper()}: {err['msg']}" if err["loc"] else err["msg"]
            for err in exc.errors()
        )
        raise ConfigError(f"invalid configuration: {problems}") from None
