from ..time_classes import Time

__all__ = ["Time"]
