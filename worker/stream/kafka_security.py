"""aiokafka's security arguments from the settings: protocol, SASL credentials and the TLS context.

The TLS context is built (and the CA bundle, certificate and key loaded) here, at start, so that
a bad mount fails with a ``SettingsError`` naming the setting instead of as an obscure handshake
error later.
"""

from __future__ import annotations

import ssl
from typing import Any

from worker.settings import Settings, SettingsError, env_name


def kafka_security_kwargs(settings: Settings) -> dict[str, Any]:
    """aiokafka client arguments for the configured security protocol."""
    kwargs: dict[str, Any] = {"security_protocol": settings.security_protocol}
    if settings.security_protocol in ("SSL", "SASL_SSL"):
        kwargs["ssl_context"] = ssl_context(settings)
    if settings.security_protocol.startswith("SASL"):
        kwargs["sasl_mechanism"] = settings.sasl_mechanism
        kwargs["sasl_plain_username"] = settings.sasl_username
        kwargs["sasl_plain_password"] = settings.sasl_password.reveal() if settings.sasl_password else ""
    return kwargs


def ssl_context(settings: Settings) -> ssl.SSLContext:
    """A client context that trusts ``NER_SSL_CAFILE`` (or the system's CAs) and, for mTLS,
    presents ``NER_SSL_CERTFILE``/``NER_SSL_KEYFILE``."""
    cafile = str(settings.ssl_cafile) if settings.ssl_cafile else None
    try:
        context = ssl.create_default_context(cafile=cafile)
    except ssl.SSLError as exc:
        raise SettingsError(f"{env_name('ssl_cafile')}: not a PEM CA bundle ({exc.reason or exc})") from None
    context.check_hostname = settings.ssl_check_hostname
    if settings.ssl_certfile:
        keyfile = str(settings.ssl_keyfile) if settings.ssl_keyfile else None
        try:
            context.load_cert_chain(str(settings.ssl_certfile), keyfile, lambda: _key_password(settings))
        except ssl.SSLError as exc:
            raise SettingsError(
                f"{env_name('ssl_certfile')}, {env_name('ssl_keyfile')}: cannot load the client certificate "
                f"and key ({exc.reason or exc}; a wrong {env_name('ssl_key_password')}, a key that does not "
                "belong to the certificate, or not PEM)"
            ) from None
    return context


def _key_password(settings: Settings) -> str:
    # A callback rather than None: with None, OpenSSL would prompt on the terminal for the
    # password of an encrypted key, and a worker without one would hang or fail obscurely.
    if settings.ssl_key_password is None:
        raise SettingsError(f"{env_name('ssl_keyfile')}: the key is encrypted; set {env_name('ssl_key_password')}")
    return settings.ssl_key_password.reveal()
