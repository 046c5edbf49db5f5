"""The HTTP client every generated endpoint function takes as ``client=``.

Transport is :mod:`requests`; one :class:`requests.Session` (and so one
connection pool) is shared by a :class:`Client` and every copy made with
:meth:`Client.with_headers` / :meth:`Client.with_timeout`.
"""

from collections.abc import Mapping
from types import TracebackType
from typing import Any, Self, TypeAlias

import requests
from attrs import define, evolve, field

Timeout: TypeAlias = float | tuple[float, float] | None
"""A requests timeout: seconds for connect and read, a ``(connect, read)`` pair, or ``None`` (wait forever)."""


def _query_value(value: Any) -> Any:
    """Render booleans the way OpenAPI servers expect them (``true``/``false``, not ``True``/``False``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return [_query_value(item) for item in value]
    return value


@define
class Client:
    """A requests-based client for the API.

    ``base_url`` is the URL the paths of the OpenAPI document are relative to.
    The generator ignores the document's ``servers``, so when the server URL
    has a path (e.g. ``servers: [{url: /api/v1alpha1}]``) that path must be part
    of ``base_url``: ``Client(base_url="http://policy:8081/api/v1alpha1")``.

    Attributes:
        base_url: Scheme, host, port and API prefix; endpoint paths are appended to it.
        headers: Headers sent with every request (per-call headers win).
        timeout: Passed to requests as ``timeout=`` on every call: seconds, a
            ``(connect, read)`` pair, or ``None`` to wait forever (the default).
        raise_on_unexpected_status: Whether to raise ``errors.UnexpectedStatus`` when the
            API answers a status code the OpenAPI document does not list.

    The ``session`` keyword argument takes the :class:`requests.Session` to use
    (mounted adapters, retries, TLS settings, proxies...); when omitted, one is
    created on first use. Copies made by :meth:`with_headers` and
    :meth:`with_timeout` share it. Using the client as a context manager (or
    calling :meth:`close`) closes that session, for every copy.
    """

    base_url: str
    headers: dict[str, str] = field(factory=dict, kw_only=True)
    timeout: Timeout = field(default=None, kw_only=True)
    raise_on_unexpected_status: bool = field(default=False, kw_only=True)
    _session: requests.Session | None = field(default=None, kw_only=True, alias="session", repr=False)

    @property
    def session(self) -> requests.Session:
        """The underlying requests.Session, created on first use."""
        if self._session is None:
            self._session = requests.Session()
        return self._session

    def with_headers(self, headers: Mapping[str, str]) -> Self:
        """Return a copy that also sends ``headers`` (e.g. an X-Request-ID) and shares this client's Session."""
        return evolve(self, headers={**self.headers, **headers}, session=self.session)

    def with_timeout(self, timeout: Timeout) -> Self:
        """Return a copy with another timeout that shares this client's Session."""
        return evolve(self, timeout=timeout, session=self.session)

    def _request_headers(self) -> dict[str, str]:
        """The headers sent with every request, before per-call headers."""
        return dict(self.headers)

    def request(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        """Send a request through the Session and return its response.

        ``url`` is appended to ``base_url`` (absolute ``http(s)://`` URLs are used
        as they are). ``headers`` given here are merged over :attr:`headers`;
        ``timeout`` defaults to :attr:`timeout`; booleans in a ``params`` mapping
        are sent as ``true``/``false``. Other keyword arguments go to
        :meth:`requests.Session.request` unchanged.
        """
        if not url.startswith(("http://", "https://")):
            url = self.base_url.rstrip("/") + "/" + url.lstrip("/")
        headers = self._request_headers()
        headers.update(kwargs.pop("headers", None) or {})
        kwargs.setdefault("timeout", self.timeout)
        params = kwargs.get("params")
        if isinstance(params, Mapping):
            kwargs["params"] = {key: _query_value(value) for key, value in params.items()}
        return self.session.request(method.upper(), url, headers=headers, **kwargs)

    def close(self) -> None:
        """Close the Session (if one was created); copies sharing it are closed too."""
        if self._session is not None:
            self._session.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


@define
class AuthenticatedClient(Client):
    """A :class:`Client` that also sends ``<auth_header_name>: <prefix> <token>`` (a bearer token by default).

    Attributes:
        token: The token to use for authentication.
        prefix: The prefix of the token in the header value (empty: the token alone).
        auth_header_name: The name of the header carrying the token.
    """

    token: str = field(kw_only=True, repr=False)
    prefix: str = field(default="Bearer", kw_only=True)
    auth_header_name: str = field(default="Authorization", kw_only=True)

    def _request_headers(self) -> dict[str, str]:
        headers = super()._request_headers()
        headers[self.auth_header_name] = f"{self.prefix} {self.token}" if self.prefix else self.token
        return headers
