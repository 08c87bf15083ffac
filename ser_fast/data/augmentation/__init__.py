"""Training-time augmentation of waveforms: noise, reverberation, level, telephone and codec bands, speed."""

from ser_fast.data.augmentation.augmenter import Augmenter
from ser_fast.data.augmentation.config import AUGMENTATIONS, AugmentConfig
from ser_fast.data.augmentation.rooms import RoomPool

__all__ = ["AUGMENTATIONS", "AugmentConfig", "Augmenter", "RoomPool"]
