from ..robot import TestBot

__all__ = ["TestBot"]
