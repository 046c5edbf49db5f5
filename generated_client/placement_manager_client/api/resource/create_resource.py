from http import HTTPStatus
from typing import Any

import requests

from ...client import AuthenticatedClient, Client
from ...models.problem import Problem
from ...models.resource import Resource
from ...types import UNSET, Response, Unset


def _get_kwargs(
    *,
    body: Resource,
    id: str | Unset = UNSET,
) -> dict[str, Any]:
    headers: dict[str, Any] = {}

    params: dict[str, Any] = {}

    params["id"] = id

    params = {k: v for k, v in params.items() if v is not UNSET and v is not None}

    _kwargs: dict[str, Any] = {
        "method": "post",
        "url": "/resources",
        "params": params,
    }

    _kwargs["json"] = body.to_dict()

    headers["Content-Type"] = "application/json"

    _kwargs["headers"] = headers
    return _kwargs


def _parse_response(*, client: AuthenticatedClient | Client, response: requests.Response) -> Problem | Resource:
    if response.status_code == 201:
        response_201 = Resource.from_dict(response.json())

        return response_201

    if response.status_code == 400:
        response_400 = Problem.from_dict(response.json())

        return response_400

    if response.status_code == 401:
        response_401 = Problem.from_dict(response.json())

        return response_401

    if response.status_code == 404:
        response_404 = Problem.from_dict(response.json())

        return response_404

    if response.status_code == 406:
        response_406 = Problem.from_dict(response.json())

        return response_406

    if response.status_code == 409:
        response_409 = Problem.from_dict(response.json())

        return response_409

    if response.status_code == 413:
        response_413 = Problem.from_dict(response.json())

        return response_413

    if response.status_code == 415:
        response_415 = Problem.from_dict(response.json())

        return response_415

    if response.status_code == 422:
        response_422 = Problem.from_dict(response.json())

        return response_422

    if response.status_code == 424:
        response_424 = Problem.from_dict(response.json())

        return response_424

    if response.status_code == 503:
        response_503 = Problem.from_dict(response.json())

        return response_503

    response_default = Problem.from_dict(response.json())

    return response_default


def _build_response(
    *, client: AuthenticatedClient | Client, response: requests.Response
) -> Response[Problem | Resource]:
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
    body: Resource,
    id: str | Unset = UNSET,
) -> Response[Problem | Resource]:
    """Create a resource

     Has the spec evaluated by the Policy Engine, records the resource with
    the spec as sent, and provisions the evaluated spec through the SPRM on
    the provider the policies selected. The id is taken from the `id`
    query parameter, or generated (a UUID) when absent.

    Args:
        id (str | Unset): A DNS-1123 label. Example: 123e4567-e89b-12d3-a456-426614174000.
        body (Resource): A placed resource.

    Raises:
        errors.UnexpectedStatus: If the server answers a status code the API does not document
            and Client.raise_on_unexpected_status is True.
        requests.RequestException: If the request fails (requests.Timeout: it took longer than
            Client.timeout).

    Returns:
        Response[Problem | Resource]
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
    body: Resource,
    id: str | Unset = UNSET,
) -> Problem | Resource | None:
    """Create a resource

     Has the spec evaluated by the Policy Engine, records the resource with
    the spec as sent, and provisions the evaluated spec through the SPRM on
    the provider the policies selected. The id is taken from the `id`
    query parameter, or generated (a UUID) when absent.

    Args:
        id (str | Unset): A DNS-1123 label. Example: 123e4567-e89b-12d3-a456-426614174000.
        body (Resource): A placed resource.

    Raises:
        errors.UnexpectedStatus: If the server answers a status code the API does not document
            and Client.raise_on_unexpected_status is True.
        requests.RequestException: If the request fails (requests.Timeout: it took longer than
            Client.timeout).

    Returns:
        Problem | Resource
    """

    return sync_detailed(
        client=client,
        body=body,
        id=id,
    ).parsed
