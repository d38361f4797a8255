"""Reels shared runtime.

The generated contracts live in ``gen/reels/v1`` and are imported as ``reels.v1``;
``extend_path`` lets the hand-written runtime (this folder) and the generated
code (gen/reels) form one package when both folders are on ``sys.path``.
"""

from pkgutil import extend_path

__path__ = extend_path(__path__, __name__)
