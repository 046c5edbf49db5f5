from http import HTTPStatus
from typing import Any, cast
from urllib.parse import quote

import requests

from ...client import AuthenticatedClient, Client
from ...models.error import Error
from ...types import UNSET, Response, Unset


def _get_kwargs(
    instance_id: str,
    *,
    deferred: bool | Unset = False,
) -> dict[str, Any]:

    params: dict[str, Any] = {}

    params["deferred"] = deferred

    params = {k: v for k, v in params.items() if v is not UNSET and v is not None}

    _kwargs: dict[str, Any] = {
        "method": "delete",
        "url": "/service-type-instances/{instance_id}".format(
            instance_id=quote(str(instance_id), safe=""),
        ),
        "params": params,
    }

    return _kwargs


def _parse_response(*, client: AuthenticatedClient | Client, response: requests.Response) -> Any | Error:
    if response.status_code == 204:
        response_204 = cast(Any, None)
        return response_204

    if response.status_code == 400:
        response_400 = Error.from_dict(response.json())

        return response_400

    if response.status_code == 404:
        response_404 = Error.from_dict(response.json())

        return response_404

    if response.status_code == 422:
        response_422 = Error.from_dict(response.json())

        return response_422

    response_default = Error.from_dict(response.json())

    return response_default


def _build_response(*, client: AuthenticatedClient | Client, response: requests.Response) -> Response[Any | Error]:
    try:
        parsed = _parse_response(client=client, response=response)
    except (ValueError, KeyError, TypeError):
        # An answer whose body is not the documented JSON (an HTML page from a proxy, a
        # truncated answer) keeps its status and raw content, with nothing parsed: the
        # caller decides what it means (an unreadable success may still have acted).
        parsed = None
    return Response(
        status_code=HTTPStatus(response.status_code),
        content=response.content,
        headers=response.headers,
        parsed=parsed,
    )


def sync_detailed(
    instance_id: str,
    *,
    client: AuthenticatedClient | Client,
    deferred: bool | Unset = False,
) -> Response[Any | Error]:
    """
    Args:
        instance_id (str):
        deferred (bool | Unset):  Default: False.

    Raises:
        errors.UnexpectedStatus: If the server answers a status code the API does not document
            and Client.raise_on_unexpected_status is True.
        requests.RequestException: If the request fails (requests.Timeout: it took longer than
            Client.timeout).

    Returns:
        Response[Any | Error]
    """

    kwargs = _get_kwargs(
        instance_id=instance_id,
        deferred=deferred,
    )

    response = client.request(
        **kwargs,
    )

    return _build_response(client=client, response=response)


def sync(
    instance_id: str,
    *,
    client: AuthenticatedClient | Client,
    deferred: bool | Unset = False,
) -> Any | Error | None:
    """
    Args:
        instance_id (str):
        deferred (bool | Unset):  Default: False.

    Raises:
        errors.UnexpectedStatus: If the server answers a status code the API does not document
            and Client.raise_on_unexpected_status is True.
        requests.RequestException: If the request fails (requests.Timeout: it took longer than
            Client.timeout).

    Returns:
        Any | Error
    """

    return sync_detailed(
        instance_id=instance_id,
        client=client,
        deferred=deferred,
    ).parsed
