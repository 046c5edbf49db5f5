from http import HTTPStatus
from typing import Any

import requests

from ...client import AuthenticatedClient, Client
from ...models.error import Error
from ...models.service_type_instance_list import ServiceTypeInstanceList
from ...types import UNSET, Response, Unset


def _get_kwargs(
    *,
    max_page_size: int | Unset = 100,
    page_token: str | Unset = UNSET,
    show_deleted: bool | Unset = UNSET,
) -> dict[str, Any]:

    params: dict[str, Any] = {}

    params["max_page_size"] = max_page_size

    params["page_token"] = page_token

    params["show_deleted"] = show_deleted

    params = {k: v for k, v in params.items() if v is not UNSET and v is not None}

    _kwargs: dict[str, Any] = {
        "method": "get",
        "url": "/service-type-instances",
        "params": params,
    }

    return _kwargs


def _parse_response(
    *, client: AuthenticatedClient | Client, response: requests.Response
) -> Error | ServiceTypeInstanceList:
    if response.status_code == 200:
        response_200 = ServiceTypeInstanceList.from_dict(response.json())

        return response_200

    if response.status_code == 400:
        response_400 = Error.from_dict(response.json())

        return response_400

    response_default = Error.from_dict(response.json())

    return response_default


def _build_response(
    *, client: AuthenticatedClient | Client, response: requests.Response
) -> Response[Error | ServiceTypeInstanceList]:
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
    max_page_size: int | Unset = 100,
    page_token: str | Unset = UNSET,
    show_deleted: bool | Unset = UNSET,
) -> Response[Error | ServiceTypeInstanceList]:
    """
    Args:
        max_page_size (int | Unset):  Default: 100.
        page_token (str | Unset):
        show_deleted (bool | Unset):

    Raises:
        errors.UnexpectedStatus: If the server answers a status code the API does not document
            and Client.raise_on_unexpected_status is True.
        requests.RequestException: If the request fails (requests.Timeout: it took longer than
            Client.timeout).

    Returns:
        Response[Error | ServiceTypeInstanceList]
    """

    kwargs = _get_kwargs(
        max_page_size=max_page_size,
        page_token=page_token,
        show_deleted=show_deleted,
    )

    response = client.request(
        **kwargs,
    )

    return _build_response(client=client, response=response)


def sync(
    *,
    client: AuthenticatedClient | Client,
    max_page_size: int | Unset = 100,
    page_token: str | Unset = UNSET,
    show_deleted: bool | Unset = UNSET,
) -> Error | ServiceTypeInstanceList | None:
    """
    Args:
        max_page_size (int | Unset):  Default: 100.
        page_token (str | Unset):
        show_deleted (bool | Unset):

    Raises:
        errors.UnexpectedStatus: If the server answers a status code the API does not document
            and Client.raise_on_unexpected_status is True.
        requests.RequestException: If the request fails (requests.Timeout: it took longer than
            Client.timeout).

    Returns:
        Error | ServiceTypeInstanceList
    """

    return sync_detailed(
        client=client,
        max_page_size=max_page_size,
        page_token=page_token,
        show_deleted=show_deleted,
    ).parsed
