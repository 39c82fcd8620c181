"""nassync: move instrument runs to the lab NAS, prove the copy, then free the disk."""

__version__ = "0.1.0"
