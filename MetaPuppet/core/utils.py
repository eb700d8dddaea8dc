from ..utils import new_loop_thread, run_coroutine_in_new_thread, set_attributes

__all__ = ["new_loop_thread", "run_coroutine_in_new_thread", "set_attributes"]
