from ..sweet import SweetSocketServer

__all__ = ["SweetSocketServer"]
