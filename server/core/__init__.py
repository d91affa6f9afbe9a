"""The pure core of a call: no sockets, no threads, no clock reads, no environment, no logging.

Every module here takes events plus ``now_ms`` (or audio-derived milliseconds) and returns
actions or records; the shell (``server/media_ws_ai.py``) executes them. ``tests/test_architecture.py``
keeps it that way.
"""
