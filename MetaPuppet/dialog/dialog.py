"""Dialog: the ``d`` a dialog function receives."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterable
from typing import Any, Final, Protocol, TypeVar

from ..dispatch.handlers import call_function
from ..types import Message, PuppetAPI
from .errors import (
    DialogError,
    DialogReplayError,
    SideEffectFailed,
    SideEffectInterrupted,
    Suspended,
    UnexpectedAnswer,
)
from .run import MAX_JOURNAL, DialogRun, fingerprint

__all__ = ["NO_WORDS", "YES_WORDS", "Dialog", "DialogSteps"]

T = TypeVar("T")

YES_WORDS: Final = frozenset(
    {"是", "是的", "好", "好的", "对", "对的", "确认", "确定", "要", "可以", "嗯", "y", "yes", "ok"}
)
NO_WORDS: Final = frozenset({"否", "不", "不是", "不要", "不用", "不行", "算了", "n", "no"})


class DialogSteps(Protocol):
    """What a dialog's ``d`` needs of its manager: ask, send, save."""

    async def ask(self, run: DialogRun, prompt: Any, mark: str, timeout: float | None) -> None: ...

    async def send(self, run: DialogRun, something: Any) -> None: ...

    async def save(self, run: DialogRun, *, pending: dict[str, Any] | None) -> None: ...


def _function_name(func: Callable[..., Any]) -> str:
    return str(getattr(func, "__qualname__", None) or repr(func))


class Dialog:
    """The ``d`` a dialog function receives: ask questions, say things, guard side effects.

    ``d.message`` is the message that started the dialog; ``d.bot``, ``d.chat`` (the
    contact or room) and ``d.user`` (the participant) say where it runs.
    """

    def __init__(self, steps: DialogSteps, run: DialogRun, api: PuppetAPI) -> None:
        self.name = run.spec.name
        self.key = run.key
        self.bot = run.key.bot
        self.chat = run.key.chat
        self.user = run.key.user
        self.message = Message(api, run.key.bot, run.state["trigger"])
        #: the state this step works on (shared with the manager)
        self.run = run
        self._steps = steps
        self._journal = run.journal
        self._cursor = 0

    @property
    def replaying(self) -> bool:
        """True while the dialog re-runs steps it has done before (nothing is sent)."""
        return self._cursor < len(self._journal)

    @property
    def is_room(self) -> bool:
        return self.run.is_room

    def _replay(self, kind: str, fingerprint: str, what: str) -> dict[str, Any] | None:
        if self._cursor >= len(self._journal):
            return None
        entry = self._journal[self._cursor]
        if entry.get("k") != kind or entry.get("h") != fingerprint:
            raise DialogReplayError(
                f"dialog {self.name!r} took another path on replay: step {self._cursor + 1} "
                f"is now {what}, unlike the first run. Keep the code between questions "
                "deterministic (wrap random, time and I/O in d.once) and bump version= when "
                "you change a dialog's steps."
            )
        self._cursor += 1
        return entry

    def _append(self, entry: dict[str, Any]) -> None:
        if len(self._journal) >= MAX_JOURNAL:
            raise DialogError(
                f"dialog {self.name!r} reached {MAX_JOURNAL} steps: split it into shorter dialogs"
            )
        self._journal.append(entry)
        self._cursor += 1

    async def ask(self, prompt: Any = None, *, timeout: float | None = None) -> str:
        """Send ``prompt`` (unless None) and return the participant's answer text.

        ``timeout`` overrides the dialog's timeout for this question. Cancel words end
        the dialog before this returns.
        """
        mark = fingerprint(prompt)
        entry = self._replay("a", mark, f"the question {prompt!r}")
        if entry is not None:
            return str(entry["t"])
        await self._steps.ask(self.run, prompt, mark, timeout)
        raise Suspended

    async def ask_int(
        self,
        prompt: Any,
        *,
        retry: Any = None,
        attempts: int = 3,
        min: int | None = None,  # noqa: A002 - reads best at the call site
        max: int | None = None,  # noqa: A002
    ) -> int:
        """Ask for a whole number. A wrong answer is asked again with ``retry`` (up to
        ``attempts`` times); without ``retry``, or after that, :class:`UnexpectedAnswer`
        ends the dialog and the answer is routed as a new message."""

        def parse(text: str) -> int | None:
            try:
                value = int(text)
            except ValueError:
                return None
            if (min is not None and value < min) or (max is not None and value > max):
                return None
            return value

        return await self._ask_until(prompt, retry, attempts, parse)

    async def ask_yes_no(
        self,
        prompt: Any,
        *,
        retry: Any = None,
        attempts: int = 3,
        yes: Iterable[str] = YES_WORDS,
        no: Iterable[str] = NO_WORDS,
    ) -> bool:
        """Ask a yes/no question (是/好/y/yes... or 否/不/n/no...); wrong answers as in
        :meth:`ask_int`."""
        yes_words = frozenset(w.casefold() for w in yes)
        no_words = frozenset(w.casefold() for w in no)
        return await self._ask_until(
            prompt,
            retry,
            attempts,
            lambda text: True if text in yes_words else False if text in no_words else None,
        )

    async def ask_choice(
        self, prompt: Any, choices: Iterable[str], *, retry: Any = None, attempts: int = 3
    ) -> str:
        """Ask until the answer is one of ``choices`` (compared without case); returns the
        choice as written in ``choices``."""
        options = {c.casefold(): c for c in choices}
        return await self._ask_until(prompt, retry, attempts, options.get)

    async def _ask_until(
        self, prompt: Any, retry: Any, attempts: int, parse: Callable[[str], T | None]
    ) -> T:
        answer = await self.ask(prompt)
        wrong = 0
        while True:
            value = parse(answer.strip().casefold())
            if value is not None:
                return value
            if retry is None or wrong >= attempts:
                raise UnexpectedAnswer()
            wrong += 1
            answer = await self.ask(retry)

    async def say(self, something: Any) -> None:
        """Send text, a FileBox, ... into the dialog's chat (once, never again on replay)."""
        mark = fingerprint(something)
        if self._replay("s", mark, f"saying {something!r}") is not None:
            return
        self._append({"k": "s", "h": mark})
        await self._steps.send(self.run, something)

    async def once(self, func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run ``func(*args, **kwargs)`` once ever and return its result (saved in the
        journal, so it must be JSON data); replays return the saved result.

        The step is saved before ``func`` runs and after it returns: should the process
        stop in between, the dialog ends with :class:`SideEffectInterrupted` rather than
        risk running it twice. If ``func`` raises, :class:`SideEffectFailed` is raised
        (now and on every replay), chained to the original error.
        """
        name = _function_name(func)
        mark = fingerprint(name)
        entry = self._replay("o", mark, f"d.once({name})")
        if entry is not None:
            if "r" in entry:
                return entry["r"]
            if "x" in entry:
                raise SideEffectFailed(str(entry["x"]))
            raise SideEffectInterrupted(
                f"dialog {self.name!r}: {name} was interrupted by a restart; it is not run again"
            )
        entry = {"k": "o", "h": mark}
        self._append(entry)
        await self._steps.save(self.run, pending=None)
        try:
            call = functools.partial(func, **kwargs) if kwargs else func
            result = await call_function(self.run.host, call, *args)
            json.dumps(result)
        except Exception as exc:
            short = getattr(func, "__name__", name)
            entry["x"] = f"{short} failed: {type(exc).__name__}: {exc}"
            await self._steps.save(self.run, pending=None)
            raise SideEffectFailed(entry["x"]) from exc
        entry["r"] = result
        await self._steps.save(self.run, pending=None)
        return result
