"""Which candidates may be served at all (pure).

* not served to this user within the no-repeat window (served history, see
  :mod:`svc_rank.side_effect.served`);
* not the user's own videos;
* not a re-upload of another creator's video (``reupload_of`` set at publish, see
  :mod:`svc_rank.index.reuploads`): the original is served instead;
* not by a creator the user asked to see fewer of (:mod:`svc_rank.filter.see_fewer`);
* known to the catalog, with a master playlist (a video svc_rank cannot describe or
  play is never shown).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Protocol

from svc_rank.candidate import Candidate


class _Video(Protocol):
    creator_id: str
    master_playlist_key: str
    reupload_of: str


def eligible(
    candidates: Iterable[Candidate],
    catalog: Mapping[str, _Video],
    *,
    user_id: str,
    served: frozenset[str] | set[str],
    hidden_creators: frozenset[str] | set[str] = frozenset(),
) -> list[Candidate]:
    out = []
    for c in candidates:
        video = catalog.get(c.video_id)
        if video is None or not video.master_playlist_key:
            continue
        if c.video_id in served or video.creator_id == user_id:
            continue
        if video.reupload_of or video.creator_id in hidden_creators:
            continue
        out.append(c)
    return out
