from http import HTTPStatus
from typing import Any

import requests

from ... import errors
from ...client import AuthenticatedClient, Client
from ...models.error import Error
from ...models.evaluate_request import EvaluateRequest
from ...models.evaluate_response import EvaluateResponse
from ...types import Response


def _get_kwargs(
    *,
    body: EvaluateRequest,
) -> dict[str, Any]:
    headers: dict[str, Any] = {}

    _kwargs: dict[str, Any] = {
        "method": "post",
        "url": "/policies:evaluateRequest",
    }

    _kwargs["json"] = body.to_dict()

    headers["Content-Type"] = "application/json"

    _kwargs["headers"] = headers
    return _kwargs


def _parse_response(
    *, client: AuthenticatedClient | Client, response: requests.Response
) -> Error | EvaluateResponse | None:
    if response.status_code == 200:
        response_200 = EvaluateResponse.from_dict(response.json())

        return response_200

    if response.status_code == 400:
        response_400 = Error.from_dict(response.json())

        return response_400

    if response.status_code == 401:
        response_401 = Error.from_dict(response.json())

        return response_401

    if response.status_code == 403:
        response_403 = Error.from_dict(response.json())

        return response_403

    if response.status_code == 406:
        response_406 = Error.from_dict(response.json())

        return response_406

    if response.status_code == 409:
        response_409 = Error.from_dict(response.json())

        return response_409

    if response.status_code == 500:
        response_500 = Error.from_dict(response.json())

        return response_500

    if client.raise_on_unexpected_status:
        raise errors.UnexpectedStatus(response.status_code, response.content)
    else:
        return None


def _build_response(
    *, client: AuthenticatedClient | Client, response: requests.Response
) -> Response[Error | EvaluateResponse]:
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
    body: EvaluateRequest,
) -> Response[Error | EvaluateResponse]:
    """Evaluate request payload against policies

     Evaluates a service instance request against all applicable policies to determine approval and
    select a provider

    Args:
        body (EvaluateRequest):

    Raises:
        errors.UnexpectedStatus: If the server answers a status code the API does not document
            and Client.raise_on_unexpected_status is True.
        requests.RequestException: If the request fails (requests.Timeout: it took longer than
            Client.timeout).

    Returns:
        Response[Error | EvaluateResponse]
    """

    kwargs = _get_kwargs(
        body=body,
    )

    response = client.request(
        **kwargs,
    )

    return _build_response(client=client, response=response)


def sync(
    *,
    client: AuthenticatedClient | Client,
    body: EvaluateRequest,
) -> Error | EvaluateResponse | None:
    """Evaluate request payload against policies

     Evaluates a service instance request against all applicable policies to determine approval and
    select a provider

    Args:
        body (EvaluateRequest):

    Raises:
        errors.UnexpectedStatus: If the server answers a status code the API does not document
            and Client.raise_on_unexpected_status is True.
        requests.RequestException: If the request fails (requests.Timeout: it took longer than
            Client.timeout).

    Returns:
        Error | EvaluateResponse
    """

    return sync_detailed(
        client=client,
        body=body,
    ).parsed
