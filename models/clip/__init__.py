"""CLIP-style open-vocabulary recognition of events (EventCLIP, EZSR): see preprocess.py for how
event images are made."""
