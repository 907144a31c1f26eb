"""The version of fastfeat (read by the build from here, and by every layer that reports it)."""
__version__ = "0.1.0"
