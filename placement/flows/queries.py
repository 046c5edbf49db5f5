"""The read flows the API serves on the event loop: get, list, health. They only read
(`store.ResourceReads`), so no request thread is held and no thread hop paid (on
PostgreSQL); the flows that change records are in `changes.py`."""

from __future__ import annotations

from dataclasses import dataclass

from placement.errors import Kind, PlacementError
from placement.flows.page_tokens import KEY_SETTING, PageTokens, new_key
from placement.model import ResourceView
from placement.store import ResourceReads


@dataclass(frozen=True, slots=True)
class Page:
    resources: list[ResourceView]
    next_page_token: str | None


class ReadFlows:
    def __init__(self, reads: ResourceReads, page_max_bytes: int | None = None) -> None:
        self._reads = reads
        self._page_max_bytes = page_max_bytes
        self._tokens: PageTokens | None = None

    async def check_health(self) -> None:
        await self._reads.ping()

    async def get_resource(self, resource_id: str) -> ResourceView:
        resource = await self._reads.get(resource_id)
        if resource is None:
            raise PlacementError(Kind.NOT_FOUND, f"resource {resource_id} not found")
        return resource

    async def list_resources(
        self,
        provider: str | None,
        page_size: int,
        page_token: str | None,
        status: str | None = None,
    ) -> Page:
        tokens = await self._page_tokens()
        after = tokens.decode(page_token, provider, status) if page_token else None
        resources, cursor = await self._reads.list_page(
            provider, page_size, after, self._page_max_bytes, status
        )
        return Page(resources, tokens.encode(cursor, provider, status) if cursor else None)

    async def _page_tokens(self) -> PageTokens:
        """The tokens, with the key the replicas share (fetched, or made, on first use)."""
        if self._tokens is None:
            self._tokens = PageTokens(await self._reads.setting(KEY_SETTING, new_key))
        return self._tokens
