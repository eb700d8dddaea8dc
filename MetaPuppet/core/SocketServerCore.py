from ..server import SocketServerCore

__all__ = ["SocketServerCore"]
