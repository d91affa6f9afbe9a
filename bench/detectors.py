"""Reference voice detectors used by the field, as per-frame deciders (20 ms µ-law -> voiced).

* webrtcvad (``webrtcvad-wheels``), aggressiveness 3, on each 20 ms frame.
* Silero VAD: the ONNX model shipped in the ``silero-vad`` wheel, run through onnxruntime with a
  numpy port of the package's own ``OnnxWrapper`` (8 kHz: 256-sample chunks, 32 samples of
  context, recurrent state 2x1x128). The package itself is not imported: it needs torch.
  A frame is voiced when the latest probability is >= 0.5.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from server.core import ulaw


class WebRtcVad:
    name = "webrtcvad"

    def __init__(self, aggressiveness: int = 3) -> None:
        import webrtcvad
        self._vad = webrtcvad.Vad(aggressiveness)

    def __call__(self, frame: bytes) -> bool:
        return self._vad.is_speech(ulaw.decode(frame).astype("<i2").tobytes(), 8000)


def silero_model_path() -> Path:
    spec = importlib.util.find_spec("silero_vad")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("silero-vad is not installed (scripts/bench_vad installs it with --no-deps)")
    return Path(list(spec.submodule_search_locations)[0]) / "data" / "silero_vad.onnx"


class SileroVad:
    name = "silero"
    CHUNK, CONTEXT = 256, 32

    def __init__(self, threshold: float = 0.5) -> None:
        import onnxruntime
        opts = onnxruntime.SessionOptions()
        opts.inter_op_num_threads = opts.intra_op_num_threads = 1
        self._session = onnxruntime.InferenceSession(str(silero_model_path()), sess_options=opts,
                                                     providers=["CPUExecutionProvider"])
        self.threshold = threshold
        self._state = np.zeros((2, 1, 128), dtype=np.float32)
        self._context = np.zeros((1, self.CONTEXT), dtype=np.float32)
        self._pending = np.zeros(0, dtype=np.float32)
        self.probability = 0.0

    def __call__(self, frame: bytes) -> bool:
        self._pending = np.concatenate([self._pending, ulaw.decode(frame).astype(np.float32) / 32768.0])
        while len(self._pending) >= self.CHUNK:
            chunk, self._pending = self._pending[: self.CHUNK], self._pending[self.CHUNK:]
            x = np.concatenate([self._context, chunk[None, :]], axis=1)
            out, self._state = self._session.run(None, {"input": x, "state": self._state,
                                                        "sr": np.array(8000, dtype=np.int64)})
            self._context = x[:, -self.CONTEXT:]
            self.probability = float(out[0][0])
        return self.probability >= self.threshold
