"""Frames and titles for a simulated world's videos, so the real embedding path sees topics.

The offline simulator stands in for content with ``World.tags``; the real path
(svc_transcode's embeddings: Triton ``visual_embedding`` on frames, ``text_embedding``
on title and hashtags, ``reels.embedding_space.combine``) needs pixels and words. This
module makes both from a video's topic mix, deterministically from the world's seed,
so that two videos about the same topics look and read alike and the 256-d vectors
the platform computes carry the world's topic structure, noisily, as real ones would:

* every topic gets a **style** (:class:`TopicStyle`): a theme (a hashtag and a list of
  words that belong together, e.g. ``cooking``: pasta, recipe, kitchen, ...), two
  colours and a texture (stripes, rings, checks, dots or waves at a seeded frequency
  and angle);
* a video's **frames** (uint8 ``[n, 224, 224, 3]``, RGB, what svc_transcode's frame
  sampler hands the visual model) show a texture of the video's own with
  ``PATCHES`` discs and squares on it, each filled with the texture of one of its
  dominant topics (at most three, drawn by the topic mix) as this video renders it
  (its own phase, scale, rotation and colour cast); the patches drift from frame to
  frame, and every pixel gets Gaussian noise. Why patches on an own background rather
  than the topics' textures alone: two videos of one topic must look alike but not
  like copies of each other, or svc_rank's re-upload detection (visual cosine >= 0.9
  across creators) would rightly hide them. Measured with the real model on 6-topic
  worlds: visual cosine across creators at most ~0.88, higher within a topic than
  across (mean ~0.65 vs ~0.59);
* its **title** is a few words drawn from its topics' word lists in proportion to the
  mix; its **hashtags** are the themes of the world's own observable ``tags`` (three
  draws from the mix, 15 % of them mislabelled), so the text the platform embeds is
  the content signal the offline evaluation uses.

Pure numpy, no I/O; every function is a function of (world, video).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recsim.world import World

FRAME_SIZE = 224
DEFAULT_FRAMES = 4
PIXEL_NOISE = 10.0  # standard deviation of the per-pixel noise, in 0..255 units
MAX_BLENDED_TOPICS = 3
# How much one video's frames differ from its topics' other videos (see video_frames).
TEXTURE_SCALE = (0.85, 1.2)  # range of the factor on a topic texture's frequency
TEXTURE_TURN = 0.15  # standard deviation of the texture's rotation, radians
COLOUR_GAIN = 0.1  # per-channel colour factors drawn from 1 +- this
PATCHES = 6  # discs or squares filled with the topics' textures, on the video's own texture
PATCH_RADIUS = (0.12, 0.25)  # in frame widths
TITLE_WORDS = 5

# Themes a topic can stand for: its hashtag and words a creator would put in a title.
_THEMES = {
    "cooking": "pasta recipe kitchen dinner garlic chef baking soup",
    "cats": "kitten cat meow whiskers purring paws fluffy litter",
    "football": "goal striker penalty stadium match keeper league pass",
    "dance": "dancing choreography moves groove ballet salsa steps hiphop",
    "travel": "beach island passport hotel flight mountains trip city",
    "cars": "engine drift supercar garage horsepower racing tyres turbo",
    "music": "guitar song piano concert melody drums singer chords",
    "gaming": "console speedrun boss level controller multiplayer quest loot",
    "fitness": "workout gym squats cardio muscles pushups training sweat",
    "makeup": "lipstick eyeliner foundation blush skincare tutorial glam brushes",
    "science": "experiment chemistry physics laboratory molecules reaction atoms microscope",
    "comedy": "joke prank funny laughing sketch standup parody hilarious",
    "gardening": "plants tomatoes soil seeds flowers watering compost harvest",
    "finance": "stocks budget investing savings taxes crypto dividends money",
    "dogs": "puppy dog fetch barking leash retriever walkies treats",
    "art": "painting canvas sketching watercolor portrait brushstrokes gallery drawing",
    "skateboarding": "skatepark kickflip skateboard ramp grind ollie halfpipe deck",
    "fashion": "outfit runway sneakers dress style jacket designer streetwear",
    "space": "rocket planets astronaut galaxy telescope orbit moon launch",
    "fishing": "boat fish lake bait catch rod trout river",
    "woodworking": "wood carpentry chisel sawdust furniture lathe planks workshop",
    "baby": "toddler baby giggles diaper crawling nursery lullaby newborn",
    "weather": "storm tornado lightning rain snowfall forecast clouds thunder",
    "history": "ancient castle empire war medieval pharaoh museum ruins",
}
THEMES: tuple[tuple[str, tuple[str, ...]], ...] = tuple(
    (tag, tuple(words.split())) for tag, words in _THEMES.items()
)
PATTERNS = ("stripes", "rings", "checks", "dots", "waves")


@dataclass(frozen=True)
class TopicStyle:
    """How one topic looks and reads."""

    tag: str
    words: tuple[str, ...]
    colours: np.ndarray  # float [2, 3], 0..255: the texture's two colours
    pattern: str  # one of PATTERNS
    frequency: float  # periods across the frame
    angle: float  # radians


def topic_styles(world: World) -> list[TopicStyle]:
    """One style per topic (``world.config.n_topics`` of them, at most ``len(THEMES)``),
    drawn from the world's seed: which theme, colours and texture each topic gets."""
    k = world.config.n_topics
    if k > len(THEMES):
        raise ValueError(f"recsim.media has {len(THEMES)} themes; the world has {k} topics")
    rng = np.random.default_rng([world.config.seed, 4099])
    themes = rng.permutation(len(THEMES))[:k]
    patterns = rng.permutation(np.resize(np.arange(len(PATTERNS)), k))
    hues = (rng.permutation(k) + rng.uniform(0.0, 0.5, size=k)) / k  # spread around the wheel
    styles = []
    for i in range(k):
        tag, words = THEMES[themes[i]]
        light = _hsv_rgb(hues[i], rng.uniform(0.55, 0.95), rng.uniform(0.75, 1.0))
        dark = _hsv_rgb((hues[i] + rng.uniform(0.3, 0.7)) % 1.0, rng.uniform(0.5, 1.0), 0.3)
        styles.append(
            TopicStyle(
                tag=tag,
                words=words,
                colours=np.stack([dark, light]) * 255.0,
                pattern=PATTERNS[patterns[i]],
                frequency=float(rng.uniform(3.0, 9.0)),
                angle=float(rng.uniform(0.0, np.pi)),
            )
        )
    return styles


def _hsv_rgb(h: float, s: float, v: float) -> np.ndarray:
    """One HSV colour (each 0..1) as RGB floats 0..1."""
    k = (np.array([5.0, 3.0, 1.0]) + h * 6.0) % 6.0
    return v - v * s * np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0)


_GRID = (np.mgrid[0:FRAME_SIZE, 0:FRAME_SIZE].astype(np.float64) + 0.5) / FRAME_SIZE  # [2, H, W]


def _texture(
    style: TopicStyle,
    phase: float,
    shift: np.ndarray,
    *,
    scale: float = 1.0,
    turn: float = 0.0,
    gain: np.ndarray | None = None,
) -> np.ndarray:
    """The topic's texture, float ``[H, W, 3]`` in 0..255. How this video and frame
    differ from the topic's other videos: ``phase`` (periods), ``shift`` [2] (frame
    widths), ``scale`` (times the frequency), ``turn`` (radians), ``gain`` [3]
    (per-channel colour factors)."""
    y, x = _GRID[0] - shift[0], _GRID[1] - shift[1]
    f, a = style.frequency * scale, style.angle + turn
    u = x * np.cos(a) + y * np.sin(a)
    v = -x * np.sin(a) + y * np.cos(a)
    two_pi = 2.0 * np.pi
    if style.pattern == "stripes":
        p = 0.5 + 0.5 * np.sin(two_pi * (f * u + phase))
    elif style.pattern == "rings":
        p = 0.5 + 0.5 * np.sin(two_pi * (f * np.hypot(x - 0.5, y - 0.5) + phase))
    elif style.pattern == "checks":
        p = (np.sin(two_pi * (f * u + phase)) * np.sin(two_pi * f * v) > 0).astype(np.float64)
    elif style.pattern == "dots":
        cell = np.hypot((f * u + phase) % 1.0 - 0.5, (f * v) % 1.0 - 0.5)
        p = (cell < 0.3).astype(np.float64)
    else:  # waves
        p = 0.5 + 0.5 * np.sin(two_pi * (f * u + 0.15 * np.sin(two_pi * 2.0 * v) + phase))
    dark, light = style.colours * (1.0 if gain is None else gain)
    return dark + p[..., None] * (light - dark)


def video_frames(
    world: World,
    video: int,
    *,
    n_frames: int = DEFAULT_FRAMES,
    styles: list[TopicStyle] | None = None,
) -> np.ndarray:
    """Frames of ``video``: uint8 ``[n_frames, 224, 224, 3]`` RGB (see the module doc)."""
    styles = styles or topic_styles(world)
    rng = np.random.default_rng([world.config.seed, 4099, 1 + int(video)])
    mix = world.topics[video]
    top = np.argsort(-mix)[:MAX_BLENDED_TOPICS]
    weights = mix[top] / mix[top].sum()
    n = top.size
    # This video's take on each topic's texture, and how it moves from frame to frame.
    phases = rng.uniform(0.0, 1.0, size=n)
    shifts = rng.uniform(-0.2, 0.2, size=(n, 2))
    drift = rng.normal(0.0, 0.04, size=(n, 2))
    scales = rng.uniform(*TEXTURE_SCALE, size=n)
    turns = rng.normal(0.0, TEXTURE_TURN, size=n)
    gains = rng.uniform(1.0 - COLOUR_GAIN, 1.0 + COLOUR_GAIN, size=(n, 3))
    # Its own scene: a texture of its own behind the topics' and a few objects that
    # move a little.
    own = TopicStyle(
        tag="",
        words=(),
        colours=rng.uniform(0.0, 255.0, size=(2, 3)),
        pattern=PATTERNS[rng.integers(len(PATTERNS))],
        frequency=float(rng.uniform(2.0, 10.0)),
        angle=float(rng.uniform(0.0, np.pi)),
    )
    own_phase = rng.uniform(0.0, 1.0)
    owner = rng.choice(n, size=PATCHES, p=weights)  # which topic fills each patch
    centres = rng.uniform(0.1, 0.9, size=(PATCHES, 2))
    radii = rng.uniform(*PATCH_RADIUS, size=PATCHES)
    square = rng.random(PATCHES) < 0.5
    velocity = rng.normal(0.0, 0.03, size=(PATCHES, 2))
    out = np.empty((n_frames, FRAME_SIZE, FRAME_SIZE, 3), dtype=np.uint8)
    for i in range(n_frames):
        frame = _texture(own, own_phase + 0.1 * i, np.zeros(2))
        textures = [
            _texture(
                styles[t],
                phases[j] + 0.1 * i,
                shifts[j] + i * drift[j],
                scale=scales[j],
                turn=turns[j],
                gain=gains[j],
            )
            for j, t in enumerate(top)
        ]
        for k in range(PATCHES):
            dy = np.abs(_GRID[0] - centres[k, 0] - i * velocity[k, 0])
            dx = np.abs(_GRID[1] - centres[k, 1] - i * velocity[k, 1])
            inside = np.maximum(dy, dx) < radii[k] if square[k] else np.hypot(dy, dx) < radii[k]
            frame[inside] = textures[owner[k]][inside]
        frame += rng.normal(0.0, PIXEL_NOISE, size=frame.shape)
        out[i] = np.clip(frame, 0.0, 255.0).astype(np.uint8)
    return out


def hashtag_topics(world: World, video: int) -> list[int]:
    """The topics of ``video``'s three hashtags, from the world's observable ``tags``
    (a normalised count vector of three draws): each topic as often as it was drawn,
    most drawn first."""
    t = world.tags[video]
    present = np.flatnonzero(t > 0)
    counts = np.rint(t[present] / t[present].min()).astype(int)
    order = np.argsort(-counts, kind="stable")
    return [int(present[i]) for i in order for _ in range(counts[i])]


def video_text(
    world: World, video: int, *, styles: list[TopicStyle] | None = None
) -> tuple[str, list[str]]:
    """(title, hashtags) of ``video``: ``TITLE_WORDS`` distinct words drawn from its
    topics' word lists in proportion to its topic mix, and the themes of its hashtag
    topics (distinct, most drawn first)."""
    styles = styles or topic_styles(world)
    rng = np.random.default_rng([world.config.seed, 4099, 1 + int(video), 2])
    mix = world.topics[video]
    words: list[str] = []
    for _ in range(4 * TITLE_WORDS):
        if len(words) == TITLE_WORDS:
            break
        topic = int(rng.choice(mix.size, p=mix))
        word = str(rng.choice(styles[topic].words))
        if word not in words:
            words.append(word)
    tags = list(dict.fromkeys(styles[t].tag for t in hashtag_topics(world, video)))
    return " ".join(words), tags
