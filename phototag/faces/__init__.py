"""Faces: dlib's detectors, the one alignment function shared with training, and the face engine that
runs dlib's networks (LiteRT, Keras or dlib itself). Nothing heavy loads at import."""

from .align import CHIP_PADDING, FaceCrop, align_and_crop, warm
from .detection import (CHIP_SIZE, DEFAULT_MIN_SCORE, DESCRIPTOR_SIZE, DETECTORS, Box, describe, detect, face_engine,
                        use_engine, verify)

__all__ = ["Box", "FaceCrop", "detect", "verify", "align_and_crop", "describe", "face_engine", "use_engine", "warm",
           "CHIP_SIZE", "CHIP_PADDING", "DESCRIPTOR_SIZE", "DETECTORS", "DEFAULT_MIN_SCORE"]
