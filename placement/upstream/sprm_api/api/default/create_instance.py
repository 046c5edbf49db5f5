from http import HTTPStatus
from typing import Any

import requests

from ...client import AuthenticatedClient, Client
from ...models.error import Error
from ...models.service_type_instance import ServiceTypeInstance
from ...types import UNSET, Response, Unset


def _get_kwargs(
    *,
    body: ServiceTypeInstance,
    id: str | Unset = UNSET,
) -> dict[str, Any]:
    headers: dict[str, Any] = {}

    params: dict[str, Any] = {}

    params["id"] = id

    params = {k: v for k, v in params.items() if v is not UNSET and v is not None}

    _kwargs: dict[str, Any] = {
        "method": "post",
        "url": "/service-type-instances",
        "params": params,
    }

    _kwargs["json"] = body.to_dict()

    headers["Content-Type"] = "application/json"

    _kwargs["headers"] = headers
    return _kwargs


def _parse_response(
    *, client: AuthenticatedClient | Client, response: requests.Response
) -> Error | ServiceTypeInstance:
    if response.status_code == 201:
        response_201 = ServiceTypeInstance.from_dict(response.json())

        return response_201

    if response.status_code == 400:
        response_400 = Error.from_dict(response.json())

        return response_400

    if response.status_code == 404:
        response_404 = Error.from_dict(response.json())

        return response_404

    if response.status_code == 409:
        response_409 = Error.from_dict(response.json())

        return response_409

    if response.status_code == 422:
        response_422 = Error.from_dict(response.json())

        return response_422

    response_default = Error.from_dict(response.json())

    return response_default


def _build_response(
    *, client: AuthenticatedClient | Client, response: requests.Response
) -> Response[Error | ServiceTypeInstance]:
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
    *,
    client: AuthenticatedClient | Client,
    body: ServiceTypeInstance,
    id: str | Unset = UNSET,
) -> Response[Error | ServiceTypeInstance]:
    """
    Args:
        id (str | Unset):
        body (ServiceTypeInstance):

    Raises:
        errors.UnexpectedStatus: If the server answers a status code the API does not document
            and Client.raise_on_unexpected_status is True.
        requests.RequestException: If the request fails (requests.Timeout: it took longer than
            Client.timeout).

    Returns:
        Response[Error | ServiceTypeInstance]
    """

    kwargs = _get_kwargs(
        body=body,
        id=id,
    )

    response = client.request(
        **kwargs,
    )

    return _build_response(client=client, response=response)


def sync(
    *,
    client: AuthenticatedClient | Client,
    body: ServiceTypeInstance,
    id: str | Unset = UNSET,
) -> Error | ServiceTypeInstance | None:
    """
    Args:
        id (str | Unset):
        body (ServiceTypeInstance):

    Raises:
        errors.UnexpectedStatus: If the server answers a status code the API does not document
            and Client.raise_on_unexpected_status is True.
        requests.RequestException: If the request fails (requests.Timeout: it took longer than
            Client.timeout).

    Returns:
        Error | ServiceTypeInstance
    """

    return sync_detailed(
        client=client,
        body=body,
        id=id,
    ).parsed
