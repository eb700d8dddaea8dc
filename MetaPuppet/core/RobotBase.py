from ..robot import RobotBase

__all__ = ["RobotBase"]
