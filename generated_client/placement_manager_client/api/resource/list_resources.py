from http import HTTPStatus
from typing import Any

import requests

from ...client import AuthenticatedClient, Client
from ...models.problem import Problem
from ...models.resource_list import ResourceList
from ...types import UNSET, Response, Unset


def _get_kwargs(
    *,
    provider: str | Unset = UNSET,
    status: str | Unset = UNSET,
    max_page_size: int | Unset = 100,
    page_token: str | Unset = UNSET,
) -> dict[str, Any]:

    params: dict[str, Any] = {}

    params["provider"] = provider

    params["status"] = status

    params["max_page_size"] = max_page_size

    params["page_token"] = page_token

    params = {k: v for k, v in params.items() if v is not UNSET and v is not None}

    _kwargs: dict[str, Any] = {
        "method": "get",
        "url": "/resources",
        "params": params,
    }

    return _kwargs


def _parse_response(*, client: AuthenticatedClient | Client, response: requests.Response) -> Problem | ResourceList:
    if response.status_code == 200:
        response_200 = ResourceList.from_dict(response.json())

        return response_200

    if response.status_code == 400:
        response_400 = Problem.from_dict(response.json())

        return response_400

    if response.status_code == 401:
        response_401 = Problem.from_dict(response.json())

        return response_401

    if response.status_code == 503:
        response_503 = Problem.from_dict(response.json())

        return response_503

    response_default = Problem.from_dict(response.json())

    return response_default


def _build_response(
    *, client: AuthenticatedClient | Client, response: requests.Response
) -> Response[Problem | ResourceList]:
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
    provider: str | Unset = UNSET,
    status: str | Unset = UNSET,
    max_page_size: int | Unset = 100,
    page_token: str | Unset = UNSET,
) -> Response[Problem | ResourceList]:
    """List resources

     Lists placed resources in creation order (then by id), optionally only
    those of one provider, or with one provider status. Follow
    `next_page_token` until it is absent to read the whole collection; a
    token is only valid with the same `provider` and `status` it was issued
    for.

    Args:
        provider (str | Unset):
        status (str | Unset):
        max_page_size (int | Unset):  Default: 100.
        page_token (str | Unset):

    Raises:
        errors.UnexpectedStatus: If the server answers a status code the API does not document
            and Client.raise_on_unexpected_status is True.
        requests.RequestException: If the request fails (requests.Timeout: it took longer than
            Client.timeout).

    Returns:
        Response[Problem | ResourceList]
    """

    kwargs = _get_kwargs(
        provider=provider,
        status=status,
        max_page_size=max_page_size,
        page_token=page_token,
    )

    response = client.request(
        **kwargs,
    )

    return _build_response(client=client, response=response)


def sync(
    *,
    client: AuthenticatedClient | Client,
    provider: str | Unset = UNSET,
    status: str | Unset = UNSET,
    max_page_size: int | Unset = 100,
    page_token: str | Unset = UNSET,
) -> Problem | ResourceList | None:
    """List resources

     Lists placed resources in creation order (then by id), optionally only
    those of one provider, or with one provider status. Follow
    `next_page_token` until it is absent to read the whole collection; a
    token is only valid with the same `provider` and `status` it was issued
    for.

    Args:
        provider (str | Unset):
        status (str | Unset):
        max_page_size (int | Unset):  Default: 100.
        page_token (str | Unset):

    Raises:
        errors.UnexpectedStatus: If the server answers a status code the API does not document
            and Client.raise_on_unexpected_status is True.
        requests.RequestException: If the request fails (requests.Timeout: it took longer than
            Client.timeout).

    Returns:
        Problem | ResourceList
    """

    return sync_detailed(
        client=client,
        provider=provider,
        status=status,
        max_page_size=max_page_size,
        page_token=page_token,
    ).parsed
