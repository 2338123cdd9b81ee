"""The classifiers shipped inside the package (``models/assets``), by dataset.

``nmnist``: ``nmnist_vgg`` trained on the 1000 real N-MNIST recordings of the N-MNIST small set
(see the README, "Default classifier", for the command that reproduces it and its accuracy).
"""

from __future__ import annotations

import os
from pathlib import Path

ASSETS = Path(__file__).resolve().parent / "assets"


def cache_dir(kind: str) -> Path:
    """evstream's cache folder for ``kind`` (generated data, never in git):
    ``$EVSTREAM_CACHE/kind``, by default ``~/.cache/evstream/kind``."""
    return Path(os.environ.get("EVSTREAM_CACHE", Path.home() / ".cache" / "evstream")) / kind


#: dataset -> bundled checkpoint
DEFAULT_CHECKPOINTS = {"nmnist": ASSETS / "nmnist_vgg.pt"}
#: dataset -> sensor size (width, height) its bundled checkpoint was made for, known without
#: loading it (so that ``evstream run`` on other sensors never imports torch)
DEFAULT_SENSORS = {"nmnist": (34, 34)}
