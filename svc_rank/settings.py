"""svc_rank's settings: one frozen dataclass, read from the environment once.

Every tunable of the feed pipeline is a typed setting with a default; the bounds a
value must respect are checked once in ``__post_init__`` (a bad value fails the start,
naming the variable, instead of producing a strange feed).
"""

from __future__ import annotations

from dataclasses import dataclass

from reels.config import (
    FromEnv,
    PlatformSettings,
    ServerSettings,
    SettingError,
    group,
    server_group,
    setting,
)
from reels.embedding_space import NEAR_DUPLICATE_COSINE


@dataclass(frozen=True)
class Settings(FromEnv):
    """Everything svc_rank reads from the environment (README, "Service settings")."""

    server: ServerSettings = server_group("rank")
    platform: PlatformSettings = group(PlatformSettings)

    # Calls to svc_stream.
    trending_timeout_s: float = setting(
        2.0, "REELS_RANK_TRENDING_TIMEOUT_S", "deadline of svc_stream ListTrending calls (s)"
    )
    stream_timeout_s: float = setting(
        0.25,
        "REELS_RANK_STREAM_TIMEOUT_S",
        "deadline of svc_stream calls while building a feed (trending, signed URLs) (s)",
    )

    # The vector index (Milvus; svc_rank is its only owner).
    embedding_dim: int = setting(
        256, "REELS_RANK_EMBEDDING_DIM", "dimension of video_embedding vectors indexed in Milvus"
    )
    milvus_collection: str = setting(
        "videos", "REELS_RANK_MILVUS_COLLECTION", "Milvus collection of video vectors"
    )
    milvus_index: str = setting(
        "IVF_FLAT", "REELS_RANK_MILVUS_INDEX", "Milvus index type: IVF_FLAT or FLAT (exact)"
    )
    milvus_nlist: int = setting(1024, "REELS_RANK_MILVUS_NLIST", "IVF_FLAT clusters")
    milvus_nprobe: int = setting(32, "REELS_RANK_MILVUS_NPROBE", "IVF_FLAT clusters searched")
    milvus_timeout_s: float = setting(
        0.1, "REELS_RANK_MILVUS_TIMEOUT_S", "deadline of one similar-recall search (s)"
    )
    indexer_interval_s: float = setting(
        1.0,
        "REELS_RANK_INDEXER_INTERVAL_S",
        "how often vectors not yet in Milvus are pushed there (s)",
    )

    # User vectors (from video.events).
    user_vector_half_life_s: float = setting(
        3 * 86400.0,
        "REELS_RANK_USER_VECTOR_HALF_LIFE_S",
        "half-life of a watch's weight in the user vector, in event time (s)",
    )

    # Candidate sources: how many each brings.
    similar_k: int = setting(200, "REELS_RANK_SIMILAR_K", "candidates from similar (Milvus top-k)")
    followee_k: int = setting(100, "REELS_RANK_FOLLOWEE_K", "candidates from followees")
    followee_window_s: float = setting(
        30 * 86400.0, "REELS_RANK_FOLLOWEE_WINDOW_S", "how recent a followee's video must be (s)"
    )
    trending_k: int = setting(100, "REELS_RANK_TRENDING_K", "candidates from trending (each list)")
    fresh_k: int = setting(100, "REELS_RANK_FRESH_K", "candidates from fresh")
    fresh_window_s: float = setting(
        2 * 86400.0, "REELS_RANK_FRESH_WINDOW_S", "a video counts as fresh this long (s)"
    )
    fresh_max_impressions: int = setting(
        200,
        "REELS_RANK_FRESH_MAX_IMPRESSIONS",
        "a fresh video leaves the fresh pool after this many impressions",
    )
    exploration_k: int = setting(60, "REELS_RANK_EXPLORATION_K", "candidates from exploration")

    # Mixing: guaranteed shares of every page.
    exploration_share: float = setting(
        0.10, "REELS_RANK_EXPLORATION_SHARE", "share of each page from exploration (0..0.5)"
    )
    fresh_share: float = setting(
        0.10, "REELS_RANK_FRESH_SHARE", "share of each page guaranteed to fresh videos (0..0.5)"
    )

    # Rule scorer weights (the seed formula).
    w_completion: float = setting(0.40, "REELS_RANK_W_COMPLETION", "rule weight of completion")
    w_engagement: float = setting(0.30, "REELS_RANK_W_ENGAGEMENT", "rule weight of engagement")
    w_affinity: float = setting(0.20, "REELS_RANK_W_AFFINITY", "rule weight of affinity")
    w_deep: float = setting(0.10, "REELS_RANK_W_DEEP", "rule weight of the deep (vector) score")

    # Learned ranker (Triton model `ranker`).
    ranker_model: str = setting("ranker", "REELS_RANK_RANKER_MODEL", "Triton model of the ranker")
    ranker_version: str = setting(
        "", "REELS_RANK_RANKER_VERSION", "ranker model version to call (empty: Triton's latest)"
    )
    ranker_enabled: bool = setting(
        True, "REELS_RANK_RANKER", "call the learned ranker (off: rule scorer only)"
    )
    ranker_timeout_s: float = setting(
        0.030, "REELS_RANK_RANKER_TIMEOUT_S", "deadline of the one ranker call per request (s)"
    )
    ranker_retry_s: float = setting(
        5.0,
        "REELS_RANK_RANKER_RETRY_S",
        "after a ranker failure, use the rule scorer this long before trying again (s)",
    )

    # Heuristics.
    served_window_s: float = setting(
        3 * 86400.0,
        "REELS_RANK_SERVED_WINDOW_S",
        "a video served to a user is not served again within this window (s)",
    )
    served_max: int = setting(
        5000, "REELS_RANK_SERVED_MAX", "served ids remembered per user (newest kept)"
    )
    near_duplicate_cosine: float = setting(
        NEAR_DUPLICATE_COSINE,
        "REELS_RANK_NEAR_DUPLICATE_COSINE",
        "two videos whose video vectors are this similar never share a page",
    )
    reupload_cosine: float = setting(
        NEAR_DUPLICATE_COSINE,
        "REELS_RANK_REUPLOAD_COSINE",
        "a video whose visual vector is this similar to another creator's earlier one "
        "is a re-upload of it (never served)",
    )
    milvus_visual_collection: str = setting(
        "videos_visual",
        "REELS_RANK_MILVUS_VISUAL_COLLECTION",
        "Milvus collection of visual vectors (re-upload detection)",
    )
    see_fewer_ttl_s: float = setting(
        30 * 86400.0,
        "REELS_RANK_SEE_FEWER_TTL_S",
        'how long "see fewer of this creator" keeps the creator out of the feed (s)',
    )
    saturation_floor: float = setting(
        0.25, "REELS_RANK_SATURATION_FLOOR", "f in the creator discount (1-f)*d^n + f"
    )
    saturation_decay: float = setting(
        0.5, "REELS_RANK_SATURATION_DECAY", "d in the creator discount (1-f)*d^n + f"
    )
    creator_cap: int = setting(
        2, "REELS_RANK_CREATOR_CAP", "most items of one creator in any window of 10"
    )

    catalog_cache_ttl_s: float = setting(
        300.0,
        "REELS_RANK_CATALOG_CACHE_TTL_S",
        "how long a video's catalog entry is cached in-process (s); a republish or "
        "re-upload mark reaches other instances within this time",
    )
    catalog_cache_size: int = setting(
        100_000, "REELS_RANK_CATALOG_CACHE_SIZE", "videos in the in-process catalog cache"
    )

    # Overload (svc_rank/overload.py, docs/DECISIONS.md "Overload").
    max_concurrent_builds: int = setting(
        8,
        "REELS_RANK_MAX_CONCURRENT_BUILDS",
        "ranked lists built at once; a GetFeed that must build waits for a slot, then "
        "serves the stale trending list (FEED_FALLBACK_OVERLOAD) (0: no limit)",
    )
    build_wait_ms: float = setting(
        200.0,
        "REELS_RANK_BUILD_WAIT_MS",
        "how long a GetFeed waits for a build slot before the stale list (ms)",
    )
    stale_feed_ttl_s: float = setting(
        30.0,
        "REELS_RANK_STALE_FEED_TTL_S",
        "age at which the overload list (trending, signed) is refreshed (s)",
    )
    stale_feed_size: int = setting(
        100, "REELS_RANK_STALE_FEED_SIZE", "items in the overload list, per region"
    )

    # The ranked list cache.
    list_size: int = setting(200, "REELS_RANK_LIST_SIZE", "items in one ranked list")
    feed_ttl_s: float = setting(60.0, "REELS_RANK_FEED_TTL_S", "lifetime of a cached list (s)")
    last_list_ttl_s: float = setting(
        3600.0,
        "REELS_RANK_LAST_LIST_TTL_S",
        "how long the last list is kept for when svc_stream is down (s)",
    )

    # A/B experiments (svc_rank/experiments, docs/DECISIONS.md "Experiments").
    experiments: str = setting(
        "",
        "REELS_RANK_EXPERIMENTS",
        "path of the running experiments (JSON or YAML, {experiments: [...]}); empty: none",
    )
    experiment_results_timeout_s: float = setting(
        30.0,
        "REELS_RANK_EXPERIMENT_RESULTS_TIMEOUT_S",
        "deadline of the svc_stream query behind GetExperimentResults (s)",
    )

    # Kafka consumer groups of this service.
    consumer_heartbeat_ms: int = setting(
        1000, "REELS_RANK_CONSUMER_HEARTBEAT_MS", "consumer group heartbeat interval (ms)"
    )
    consumer_commit_timeout_s: float = setting(
        5.0, "REELS_RANK_CONSUMER_COMMIT_TIMEOUT_S", "deadline of an offset commit (s)"
    )
    consumer_retry_backoff_max_s: float = setting(
        5.0,
        "REELS_RANK_CONSUMER_RETRY_BACKOFF_MAX_S",
        "longest pause before a consumer retries a failed record (s)",
    )

    def __post_init__(self) -> None:
        def bound(name: str, env: str, lo: float, hi: float) -> None:
            value = getattr(self, name)
            if not lo <= value <= hi:
                raise SettingError(f"{env}={value}: must be between {lo} and {hi}")

        bound("exploration_share", "REELS_RANK_EXPLORATION_SHARE", 0.0, 0.5)
        bound("fresh_share", "REELS_RANK_FRESH_SHARE", 0.0, 0.5)
        bound("saturation_floor", "REELS_RANK_SATURATION_FLOOR", 0.0, 1.0)
        bound("saturation_decay", "REELS_RANK_SATURATION_DECAY", 0.0, 1.0)
        bound("creator_cap", "REELS_RANK_CREATOR_CAP", 1, 10)
        bound("near_duplicate_cosine", "REELS_RANK_NEAR_DUPLICATE_COSINE", 0.0, 1.0)
        bound("reupload_cosine", "REELS_RANK_REUPLOAD_COSINE", 0.0, 1.0)
        bound("see_fewer_ttl_s", "REELS_RANK_SEE_FEWER_TTL_S", 1.0, 365 * 86400.0)
        bound("list_size", "REELS_RANK_LIST_SIZE", 10, 1000)
        bound("embedding_dim", "REELS_RANK_EMBEDDING_DIM", 2, 4096)
        if self.milvus_index not in ("IVF_FLAT", "FLAT"):
            raise SettingError(f"REELS_RANK_MILVUS_INDEX={self.milvus_index!r}: IVF_FLAT or FLAT")
