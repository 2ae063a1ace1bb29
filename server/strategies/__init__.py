"""Flower Message-API strategies, one per module."""

from server.strategies.tiny_reptile import TinyReptile, TinyReptileConfig

__all__ = ["TinyReptile", "TinyReptileConfig"]
