"""What every part of the demo builder shares: its error and the size limits of a build."""

from __future__ import annotations

from evoke import EvokeError

MIN_CLIPS, MAX_CLIPS = 30, 60
MIN_CLIP_S, MAX_CLIP_S = 5.0, 15.0


class DemoError(EvokeError):
    """The demo dataset cannot be built (a media source or a tool is missing)."""
