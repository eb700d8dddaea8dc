"""The mock console: make a mocked contact talk to a bot that runs on the mock puppet.

With ``metapuppet serve`` + ``metapuppet client`` on ``wechaty-puppet-mock`` there is no
WeChat to type into. The console (the dashboard's *Mock console* panel, ``metapuppet mock
say --as Alice "hello"``) runs the test kit's ``mock`` helpers on the bot through constant
snippets (:data:`~MetaPuppet.snippets.MOCK_SAY`, :data:`~MetaPuppet.snippets.MOCK_FRIEND`):
a contact is found by name or created, a room by topic (the contact joins it when needed).

Only for bots whose channel is ``mock`` (anything else is refused with ``not_supported``
before the bot is asked), and only for tokens with the ``send`` permission.
"""

from __future__ import annotations

from typing import Any, Final

from ..errors import MetaPuppetError
from ..snippets import MOCK_FRIEND, MOCK_SAY
from .actions import MAX_TEXT_LENGTH, Params, bot_field, check_fields, file_field, translate
from .errors import WebError
from .host import WebHost

__all__ = ["MAX_NAME_LENGTH", "MOCK_CHANNEL", "mock_bot", "mock_friend", "mock_say"]

MOCK_CHANNEL: Final = "mock"
#: the longest contact name or room topic the console accepts
MAX_NAME_LENGTH: Final = 100


def _name(params: Params, key: str, what: str, *, required: bool) -> str | None:
    value = params.get(key)
    if value is None:
        if required:
            raise WebError("invalid_request", f"missing field {key!r} ({what})")
        return None
    if not isinstance(value, str) or not value.strip():
        raise WebError("invalid_request", f"{key!r} must be a non-empty string ({what})")
    if len(value) > MAX_NAME_LENGTH:
        raise WebError("invalid_request", f"{key!r} is longer than {MAX_NAME_LENGTH} characters")
    return value.strip()


def mock_bot(host: WebHost, params: Params) -> str:
    """The bot the console acts on: the named one or the only one, on the mock channel."""
    bot = bot_field(params)
    if bot is None:
        connected = host.bots
        if not connected:
            raise WebError("bot_not_connected", "no bot is connected: start `metapuppet client`")
        if len(connected) > 1:
            raise WebError(
                "bot_required",
                f"several bots are connected ({', '.join(connected)}): say which with 'bot'",
            )
        bot = connected[0]
    if bot not in host.bots:
        raise WebError("bot_not_connected", f"bot {bot!r} is not connected")
    channel = host.capabilities(bot).channel
    if channel != MOCK_CHANNEL:
        raise WebError(
            "not_supported",
            f"the mock console works only for bots on the mock puppet; bot {bot!r} runs on the "
            f"{channel!r} channel, where real people write to it",
        )
    return bot


async def _run(host: WebHost, code: str, args: dict[str, Any], bot: str) -> Any:
    try:
        return await host.exec_snippet(code, args, bot=bot)
    except MetaPuppetError as exc:
        raise translate(exc) from None


async def mock_say(host: WebHost, params: Params) -> dict[str, Any]:
    """``{as, text | file, room?, mention?, bot?}``: the contact ``as`` says it to the bot, or
    in the room ``room`` (``mention``: @-mentioning the bot)."""
    check_fields(params, {"as", "text", "file", "room", "mention", "bot"}, {"as"})
    name = _name(params, "as", "the mocked contact's name", required=True)
    room = _name(params, "room", "the room's topic", required=False)
    mention = params.get("mention", False)
    if not isinstance(mention, bool):
        raise WebError("invalid_request", "'mention' must be true or false")
    if mention and room is None:
        raise WebError("invalid_request", "'mention' needs a 'room' (direct messages need none)")
    has_text, has_file = "text" in params, "file" in params
    if has_text == has_file:
        raise WebError("invalid_request", "give exactly one of 'text' and 'file'")
    text: str | None = None
    file: dict[str, str] | None = None
    if has_text:
        value = params["text"]
        if not isinstance(value, str) or not value.strip():
            raise WebError("invalid_request", "'text' must be a non-empty string")
        if len(value) > MAX_TEXT_LENGTH:
            raise WebError("invalid_request", f"'text' is longer than {MAX_TEXT_LENGTH} characters")
        text = value
    else:
        box = file_field(params, host.config.max_message_bytes)  # checks name and base64
        file = {"name": box.name, "base64": params["file"]["base64"]}
    bot = mock_bot(host, params)
    args: dict[str, Any] = {"name": name, "payload": {}, "text": text, "file": file}
    args.update(room=room, mention=mention)
    result = await _run(host, MOCK_SAY, args, bot)
    return {"bot": bot, **dict(result or {})}


async def mock_friend(host: WebHost, params: Params) -> dict[str, Any]:
    """``{as, hello?, bot?}``: the contact ``as`` (created as a stranger when new) asks the
    bot to be friends."""
    check_fields(params, {"as", "hello", "bot"}, {"as"})
    name = _name(params, "as", "the mocked contact's name", required=True)
    hello = params.get("hello", "")
    if not isinstance(hello, str) or len(hello) > MAX_TEXT_LENGTH:
        raise WebError("invalid_request", f"'hello' must be a string of at most {MAX_TEXT_LENGTH}")
    bot = mock_bot(host, params)
    args = {"name": name, "payload": {"friend": False}, "hello": hello}
    result = await _run(host, MOCK_FRIEND, args, bot)
    return {"bot": bot, **dict(result or {})}
