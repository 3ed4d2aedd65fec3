"""The botocore, aiobotocore and boto3 internals the toolkit relies on, named in one place.

Each use below reaches past the SDKs' public API because the public API has no way to say it:

- a session whose credentials come from an assume-role fetcher, refreshed before they expire:
  botocore builds such credentials itself only from a profile, so the session's ``_credentials`` is set;
- the botocore session under a boto3 session (``_session``), to read its configuration and credentials;
- one TLS context shared by every aiobotocore client (aiobotocore's ``_build_ssl_contexts``,
  ``_build_verify_context``, ``_cert_file`` and ``_verify``, 3.x): building one loads the CA bundle.

``tests/unit/test_internals_contract.py`` checks each against the installed SDKs, so an upgrade that
changes one fails there, by name, rather than somewhere in a producer.
"""

from __future__ import annotations

import ssl
import threading
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import aiobotocore.credentials
import aiobotocore.session
import boto3
import botocore.credentials
import botocore.session
from aiobotocore.httpsession import AIOHTTPSession

__all__ = ["SharedTLSSession", "botocore_session_of", "set_refreshing_credentials",
           "set_refreshing_credentials_async"]


def botocore_session_of(session: boto3.session.Session) -> botocore.session.Session:
    return session._session


def set_refreshing_credentials(session: botocore.session.Session,
                               fetch: Callable[[], Mapping[str, Any]]) -> None:
    """Make ``session`` use credentials that ``fetch`` renews before they expire (assume-role)."""
    session._credentials = botocore.credentials.DeferredRefreshableCredentials(
        refresh_using=fetch, method="assume-role")


def set_refreshing_credentials_async(session: aiobotocore.session.AioSession,
                                     fetch: Callable[[], Awaitable[Mapping[str, Any]]]) -> None:
    """The same for an aiobotocore session, whose credentials refresh on the event loop."""
    session._credentials = aiobotocore.credentials.AioDeferredRefreshableCredentials(
        refresh_using=fetch, method="assume-role")


#: TLS contexts by certificate-verification setting, shared by every client this module builds.
_TLS_CONTEXTS: dict[object, ssl.SSLContext] = {}
_tls_lock = threading.Lock()


class SharedTLSSession(AIOHTTPSession):  # type: ignore[misc]  # aiobotocore is untyped here
    """aiobotocore's HTTP session, with one TLS context per process and verification setting.

    aiobotocore builds a context for every client, on its first request (even to an http://
    endpoint), and building one loads the CA bundle: ~30 ms of CPU each time, and a producer alone
    has three clients.  A context is safe to share; those that get a client certificate or a
    proxy's settings are not shared (aiobotocore changes them after building them).  aiobotocore
    releases before 3.0 have no ``_build_ssl_contexts``: there this class changes nothing.
    """

    def _build_ssl_contexts(self, proxy_url: str | None) -> tuple[ssl.SSLContext, ssl.SSLContext | None]:
        if self._cert_file or proxy_url:
            contexts: tuple[ssl.SSLContext, ssl.SSLContext | None] = super()._build_ssl_contexts(proxy_url)
            return contexts
        with _tls_lock:  # built on executor threads
            context = _TLS_CONTEXTS.get(self._verify)
            if context is None:
                context = _TLS_CONTEXTS[self._verify] = self._build_verify_context()
        return context, None
