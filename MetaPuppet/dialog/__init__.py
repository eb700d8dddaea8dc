"""Dialogs: a multi-step conversation written as one async function.

::

    @bot.dialog(trigger="开始")
    async def accumulator(d):
        n = await d.ask_int("您需要累加几个数字?", retry="请输入整数")
        total = 0
        for i in range(n):
            total += await d.ask_int(f"请输入第{i+1}个数字, 目前累加和:{total}")
        await d.say(f"累加结束,累加和: {total}")

**How it works: a replay journal.** A dialog keeps no live coroutine between messages.
Its state in the store is the trigger message plus a journal of what happened: each answer
(with the id of the message that gave it), each ``say`` and each ``once`` result. When an
answer arrives, the server takes the conversation's lock, appends the answer and runs the
function again from the top: ``ask`` returns journalled answers at once, ``say`` does not
send again, ``once`` returns its saved result, until the function reaches the first new
question. That question is saved, *then* sent, and the run stops there.

So every server process can continue any dialog, a restarted server continues at the same
question, and two processes sharing a Redis store advance one dialog exactly once per
answer (the lock serialises them; an answer whose message id is already in the journal is a
duplicate and ignored). The price: code between questions runs again on each step, so it
must be deterministic. Plain computation (``total += ...``) is; for anything with an effect
outside the dialog (writing a database, calling an API, drawing a random number) use
``await d.once(func, *args)``, which runs ``func`` once ever and replays its saved result.
``d.say`` and the questions are guarded the same way. Replay checks each step against the
journal and ends the dialog with :class:`DialogReplayError` if the code took another path
(bump ``version=`` when you change a dialog's steps; old conversations are then dropped).
"""

from __future__ import annotations

from ..dispatch.dialog_spec import (
    DEFAULT_CANCEL_MESSAGE,
    DEFAULT_CANCEL_WORDS,
    DEFAULT_TIMEOUT,
    DialogSpec,
)
from .dialog import NO_WORDS, YES_WORDS, Dialog
from .errors import (
    DialogError,
    DialogReplayError,
    SideEffectFailed,
    SideEffectInterrupted,
    UnexpectedAnswer,
)
from .manager import ENDED_MARKER_TTL, EXPIRED_GRACE, STATE_FORMAT, DialogManager
from .run import MAX_JOURNAL, DialogRun

__all__ = [
    "DEFAULT_CANCEL_MESSAGE",
    "DEFAULT_CANCEL_WORDS",
    "DEFAULT_TIMEOUT",
    "ENDED_MARKER_TTL",
    "EXPIRED_GRACE",
    "MAX_JOURNAL",
    "NO_WORDS",
    "STATE_FORMAT",
    "YES_WORDS",
    "Dialog",
    "DialogError",
    "DialogManager",
    "DialogReplayError",
    "DialogRun",
    "DialogSpec",
    "SideEffectFailed",
    "SideEffectInterrupted",
    "UnexpectedAnswer",
]
