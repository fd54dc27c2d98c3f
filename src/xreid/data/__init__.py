"""Datasets: PETA, the PETA-ReID protocol, Market-1501, a user's own folder of crops."""

from xreid.data.images import ImageError, load_image
from xreid.data.records import ImageRecord

__all__ = ["ImageError", "ImageRecord", "load_image"]
