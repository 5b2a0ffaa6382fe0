"""How every Kafka client of the stack connects: one place, built from the settings (docs/transport-security.md).

`client_options` is what aiokafka's producers, consumers and admin clients take; `faust_options` is the same for
the worker's faust app, whose own clients faust builds from `broker_credentials`. With "plaintext" (the embedded
broker of the local stack, on loopback only) both are plaintext; with "sasl_ssl" every connection is TLS, the
broker's certificate checked against the configured CA and the broker's name, then a SCRAM login.
"""

from __future__ import annotations

import ssl
from typing import Any

from plumbing.settings import Settings


def ssl_context(settings: Settings) -> ssl.SSLContext:
    """TLS to the broker: only certificates from the configured CA, for the name dialled, TLS 1.2 at least."""
    from aiokafka.helpers import create_ssl_context

    context = create_ssl_context(cafile=settings.kafka_ca_file)
    # create_default_context already checks names and certificates; say so, so no later edit loosens it quietly.
    context.check_hostname = True
    context.verify_mode = ssl.CERT_REQUIRED
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def client_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for AIOKafkaProducer, AIOKafkaConsumer and AIOKafkaAdminClient."""
    if settings.kafka_security == "plaintext":
        return {"security_protocol": "PLAINTEXT"}
    return {
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": settings.kafka_sasl_mechanism,
        "sasl_plain_username": settings.kafka_username,
        "sasl_plain_password": settings.kafka_password,
        "ssl_context": ssl_context(settings),
    }


def faust_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for faust.App: its consumer, producer and admin connections all use these credentials."""
    if settings.kafka_security == "plaintext":
        return {}
    import faust

    return {
        "broker_credentials": faust.SASLCredentials(
            username=settings.kafka_username,
            password=settings.kafka_password,
            # With an SSL context faust's protocol becomes SASL_SSL (faust/auth.py); without one it would be
            # SASL_PLAINTEXT, which the broker has no listener for.
            ssl_context=ssl_context(settings),
            mechanism=settings.kafka_sasl_mechanism,
        )
    }
