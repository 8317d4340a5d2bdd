"""Rewrites the links of a rendered message to signed, click-counting redirects."""

from __future__ import annotations

import asyncio

from campaignd.domain import links
from campaignd.store.operations_repo import OperationsRepository


class LinkTracker:
    """One campaign's link rewriting; link ids are stored once and then kept in memory."""

    def __init__(
        self, campaign_id: int, repo: OperationsRepository, base_url: str, sign: links.Signer
    ) -> None:
        self.campaign_id = campaign_id
        self.repo = repo
        self.base = base_url.rstrip("/")
        self.sign = sign
        self._ids: dict[str, int] = {}
        self._storing = asyncio.Lock()

    async def rewrite(self, text: str, contact_id: int, variant: str | None) -> str:
        spans = links.spans(text)
        found = links.find_links(text, self.base + "/", spans)
        if not found:
            return text
        if any(url not in self._ids for url in found):
            # One store at a time: the first messages of a campaign all carry the same new
            # links, and 64 workers storing them at once would be 64 write transactions.
            async with self._storing:
                missing = [url for url in found if url not in self._ids]
                if missing:
                    self._ids.update(await self.repo.link_ids(self.campaign_id, missing))

        def tracked(url: str) -> str | None:
            link_id = self._ids.get(url)
            if link_id is None:  # one of ours (skipped above), or over-long
                return None
            token = links.LinkToken(self.campaign_id, contact_id, link_id, variant)
            return f"{self.base}/l/{links.encode_token(token, self.sign)}"

        return links.rewrite(text, tracked, spans)
