"""The routing plumbing of robots: decorators on the robot, its router and dialogs.

``robot.on_message(message)`` runs the hook; ``@robot.on_message(text=...)`` registers a
routed handler; ``@RobotBase.on_message(...)`` in a class body does so for every instance.
"""

from __future__ import annotations

import functools
import inspect
import types
from collections.abc import Callable
from typing import Any, TypeVar

from .dialog import DialogManager
from .dispatch import DispatchHost, Middleware, Router
from .dispatch.handlers import CONTINUE
from .storage import BaseStorage, MemoryStorage
from .types import HOOK_KINDS

__all__ = ["BoundHook", "HookOrDecorator", "Routable", "RouteDecorator"]

F = TypeVar("F", bound=Callable[..., Any])

_MARKS = "__metapuppet_routes__"


def _mark(method: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Callable[[F], F]:
    def mark(func: F) -> F:
        marks = getattr(func, _MARKS, ())
        setattr(func, _MARKS, (*marks, (method, args, kwargs)))
        return func

    return mark


def _is_bare_decorator_use(args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
    return (
        len(args) == 1
        and not kwargs
        and (inspect.isroutine(args[0]) or isinstance(args[0], functools.partial))
    )


def _class_level(method: str, *args: Any, **kwargs: Any) -> Any:
    """``@RobotBase.on_message(...)`` in a class body: marks the method for each instance."""
    if _is_bare_decorator_use(args, kwargs):
        return _mark(method, (), {})(args[0])
    return _mark(method, args, kwargs)


class RouteDecorator:
    """A router decorator on the robot: ``bot.command(...)`` registers on the robot's
    router; ``RobotBase.command(...)`` in a class body marks a method for every instance."""

    def __init__(self, method: str) -> None:
        self.method = method
        self.__doc__ = getattr(Router, method).__doc__

    def __get__(self, robot: Any, owner: type | None = None) -> Callable[..., Callable[[F], F]]:
        if robot is None:
            return functools.partial(_class_level, self.method)
        decorator: Callable[..., Callable[[F], F]] = getattr(robot.router, self.method)
        return decorator


class HookOrDecorator:
    """A robot hook that doubles as the decorator for routed handlers of its event.

    ``robot.on_message(message)`` runs the hook (as before); ``@robot.on_message(text=...)``
    (or bare ``@robot.on_message``) registers a handler on the robot's router;
    ``@RobotBase.on_message(...)`` in a class body does so for every instance. Subclass
    overrides of the hook are wrapped the same way, so ``super().on_message(m)`` works.
    """

    def __init__(self, hook: Callable[..., Any], method: str) -> None:
        self.hook = hook
        self.method = method
        functools.update_wrapper(self, hook)

    def __get__(self, robot: Any, owner: type | None = None) -> Any:
        if robot is None:
            return self
        return BoundHook(robot, self)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if args and isinstance(args[0], Routable):  # RobotBase.on_message(robot, message)
            return self.hook(*args, **kwargs)
        return _class_level(self.method, *args, **kwargs)


class BoundHook:
    """``robot.on_message`` and friends: call with an event to run the hook, or use as a
    decorator to register a handler."""

    __slots__ = ("robot", "spec")

    def __init__(self, robot: Any, spec: HookOrDecorator) -> None:
        self.robot = robot
        self.spec = spec

    @property
    def method(self) -> Callable[..., Any]:
        """The hook as a plain bound method (``async def`` stays a coroutine function)."""
        return types.MethodType(self.spec.hook, self.robot)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        register = getattr(self.robot.router, self.spec.method)
        if not args:
            return register(**kwargs)
        if _is_bare_decorator_use(args, kwargs):
            return register()(args[0])
        return self.spec.hook(self.robot, *args, **kwargs)

    def __repr__(self) -> str:
        return f"<hook {self.spec.hook.__qualname__} of {self.robot!r}>"


class Routable:
    """The routing plumbing of :class:`~MetaPuppet.RobotBase`.

    Gives a robot a router (``robot.router``), the decorators (``on_message``, ``command``,
    ``on_friendship``, ``on_room_join``, ``dialog``, ...), ``include_router``,
    ``middleware``, ``error_handler``, a dialog manager over ``dialog_store``, and
    :meth:`route_event`, which the server calls for every event.
    """

    #: What ``command`` handlers of the robot's own router expect before the word.
    command_prefix: str | tuple[str, ...] = "/"
    #: Where dialogs keep their state (default: a :class:`~MetaPuppet.storage.MemoryStorage`).
    dialog_store: BaseStorage | None = None

    command = RouteDecorator("command")
    dialog = RouteDecorator("dialog")

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for hook in HOOK_KINDS:
            value = cls.__dict__.get(hook)
            if inspect.isfunction(value):
                setattr(cls, hook, HookOrDecorator(value, hook))

    @property
    def router(self) -> Router:
        """This robot's own router (created on first use, with the class-level handlers)."""
        router: Router | None = self.__dict__.get("_router")
        if router is None:
            router = Router(type(self).__name__, command_prefix=self.command_prefix)
            self.__dict__["_router"] = router
            self._register_class_handlers(router)
        return router

    @property
    def dialogs(self) -> DialogManager:
        """Runs this robot's dialogs over ``dialog_store``."""
        manager: DialogManager | None = self.__dict__.get("_dialogs")
        if manager is None:
            if self.dialog_store is None:
                self.dialog_store = MemoryStorage()
            manager = DialogManager(self, self.dialog_store)
            self.__dict__["_dialogs"] = manager
        return manager

    def dialogs_in_progress(self) -> list[dict[str, Any]]:
        """Dialogs this process waits on (``server.dialog_provider`` for the dashboard)."""
        manager: DialogManager | None = self.__dict__.get("_dialogs")
        return [] if manager is None else manager.in_progress()

    async def aclose(self) -> None:
        """Stop this robot's dialog timers (the server calls it when it stops); the
        dialogs stay in their store."""
        manager: DialogManager | None = self.__dict__.get("_dialogs")
        if manager is not None:
            await manager.aclose()

    def _register_class_handlers(self, router: Router) -> None:
        owner = type(self)
        for attribute in dir(owner):
            marks = getattr(inspect.getattr_static(owner, attribute, None), _MARKS, None)
            if not marks:
                continue
            bound = getattr(self, attribute)
            for method, args, kwargs in marks:
                getattr(router, method)(*args, **kwargs)(bound)

    def include_router(self, router: Router) -> Router:
        """Add a router's handlers and dialogs to this robot."""
        return self.router.include_router(router)

    def middleware(self, middleware: Middleware) -> Middleware:
        """Wrap every handler of this robot (its routers' too); usable as a decorator."""
        return self.router.middleware(middleware)

    def error_handler(self, handler: F) -> F:
        """Answer errors of this robot's handlers; see :meth:`Router.error_handler`."""
        return self.router.error_handler(handler)

    async def route_event(self, server: DispatchHost, hook: str, event: Any) -> Any:
        """Handle one event: an active dialog first (messages), then the routed handlers,
        then the robot's hook ``hook``. Returns the reply to send."""
        kind = HOOK_KINDS[hook]
        router = self.router
        if kind == "message" and router.has_dialogs():
            reply = await self.dialogs.feed(server, event)
            if reply is not CONTINUE:
                return reply
        if router.routes(kind):
            reply = await router.dispatch(kind, event, robot=self, server=server)
            if reply is not CONTINUE:
                return reply
        method = getattr(self, hook)
        if isinstance(method, BoundHook):
            method = method.method
        return await server.call_handler(method, event)
