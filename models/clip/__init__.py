"""CLIP-style open-vocabulary recognition of events (EventCLIP, EZSR): ``preprocess`` makes the
event images, ``model`` loads open_clip models from the user's files, ``zeroshot`` classifies,
``eval`` scores datasets. Nothing is downloaded: Hugging Face access is off (``HF_HUB_OFFLINE=1``
unless the user set it) from the moment this package is imported."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
