from http import HTTPStatus
from typing import Any, cast
from urllib.parse import quote

import requests

from ...client import AuthenticatedClient, Client
from ...models.problem import Problem
from ...types import Response


def _get_kwargs(
    resource_id: str,
) -> dict[str, Any]:

    _kwargs: dict[str, Any] = {
        "method": "delete",
        "url": "/resources/{resource_id}".format(
            resource_id=quote(str(resource_id), safe=""),
        ),
    }

    return _kwargs


def _parse_response(*, client: AuthenticatedClient | Client, response: requests.Response) -> Any | Problem:
    if response.status_code == 204:
        response_204 = cast(Any, None)
        return response_204

    if response.status_code == 400:
        response_400 = Problem.from_dict(response.json())

        return response_400

    if response.status_code == 401:
        response_401 = Problem.from_dict(response.json())

        return response_401

    if response.status_code == 404:
        response_404 = Problem.from_dict(response.json())

        return response_404

    if response.status_code == 409:
        response_409 = Problem.from_dict(response.json())

        return response_409

    if response.status_code == 422:
        response_422 = Problem.from_dict(response.json())

        return response_422

    if response.status_code == 503:
        response_503 = Problem.from_dict(response.json())

        return response_503

    response_default = Problem.from_dict(response.json())

    return response_default


def _build_response(*, client: AuthenticatedClient | Client, response: requests.Response) -> Response[Any | Problem]:
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
    resource_id: str,
    *,
    client: AuthenticatedClient | Client,
) -> Response[Any | Problem]:
    """Delete a resource

     Deletes the instance in the SPRM, then the record. When the SPRM
    refuses or fails, the record is kept and the error is returned.

    Args:
        resource_id (str): A DNS-1123 label. Example: 123e4567-e89b-12d3-a456-426614174000.

    Raises:
        errors.UnexpectedStatus: If the server answers a status code the API does not document
            and Client.raise_on_unexpected_status is True.
        requests.RequestException: If the request fails (requests.Timeout: it took longer than
            Client.timeout).

    Returns:
        Response[Any | Problem]
    """

    kwargs = _get_kwargs(
        resource_id=resource_id,
    )

    response = client.request(
        **kwargs,
    )

    return _build_response(client=client, response=response)


def sync(
    resource_id: str,
    *,
    client: AuthenticatedClient | Client,
) -> Any | Problem | None:
    """Delete a resource

     Deletes the instance in the SPRM, then the record. When the SPRM
    refuses or fails, the record is kept and the error is returned.

    Args:
        resource_id (str): A DNS-1123 label. Example: 123e4567-e89b-12d3-a456-426614174000.

    Raises:
        errors.UnexpectedStatus: If the server answers a status code the API does not document
            and Client.raise_on_unexpected_status is True.
        requests.RequestException: If the request fails (requests.Timeout: it took longer than
            Client.timeout).

    Returns:
        Any | Problem
    """

    return sync_detailed(
        resource_id=resource_id,
        client=client,
    ).parsed
