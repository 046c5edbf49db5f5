from http import HTTPStatus
from typing import Any
from urllib.parse import quote

import requests

from ...client import AuthenticatedClient, Client
from ...models.problem import Problem
from ...models.rehydrate_request import RehydrateRequest
from ...models.resource import Resource
from ...types import Response


def _get_kwargs(
    resource_id: str,
    *,
    body: RehydrateRequest,
) -> dict[str, Any]:
    headers: dict[str, Any] = {}

    _kwargs: dict[str, Any] = {
        "method": "post",
        "url": "/resources/{resource_id}:rehydrate".format(
            resource_id=quote(str(resource_id), safe=""),
        ),
    }

    _kwargs["json"] = body.to_dict()

    headers["Content-Type"] = "application/json"

    _kwargs["headers"] = headers
    return _kwargs


def _parse_response(*, client: AuthenticatedClient | Client, response: requests.Response) -> Problem | Resource:
    if response.status_code == 200:
        response_200 = Resource.from_dict(response.json())

        return response_200

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
    resource_id: str,
    *,
    client: AuthenticatedClient | Client,
    body: RehydrateRequest,
) -> Response[Problem | Resource]:
    """Rehydrate a resource

     Places the resource again: its original spec is re-evaluated by the
    Policy Engine, a new resource is created under `new_resource_id` and
    provisioned, and only then is the old instance deleted (deferred in the
    SPRM) and the old record removed. On failure the old resource stays.

    Args:
        resource_id (str): A DNS-1123 label. Example: 123e4567-e89b-12d3-a456-426614174000.
        body (RehydrateRequest): Where to place the resource again.

    Raises:
        errors.UnexpectedStatus: If the server answers a status code the API does not document
            and Client.raise_on_unexpected_status is True.
        requests.RequestException: If the request fails (requests.Timeout: it took longer than
            Client.timeout).

    Returns:
        Response[Problem | Resource]
    """

    kwargs = _get_kwargs(
        resource_id=resource_id,
        body=body,
    )

    response = client.request(
        **kwargs,
    )

    return _build_response(client=client, response=response)


def sync(
    resource_id: str,
    *,
    client: AuthenticatedClient | Client,
    body: RehydrateRequest,
) -> Problem | Resource | None:
    """Rehydrate a resource

     Places the resource again: its original spec is re-evaluated by the
    Policy Engine, a new resource is created under `new_resource_id` and
    provisioned, and only then is the old instance deleted (deferred in the
    SPRM) and the old record removed. On failure the old resource stays.

    Args:
        resource_id (str): A DNS-1123 label. Example: 123e4567-e89b-12d3-a456-426614174000.
        body (RehydrateRequest): Where to place the resource again.

    Raises:
        errors.UnexpectedStatus: If the server answers a status code the API does not document
            and Client.raise_on_unexpected_status is True.
        requests.RequestException: If the request fails (requests.Timeout: it took longer than
            Client.timeout).

    Returns:
        Problem | Resource
    """

    return sync_detailed(
        resource_id=resource_id,
        client=client,
        body=body,
    ).parsed
