"""The typed views against the public fake link: no server, no Node.

Views talk only to a PuppetAPI; here that is the puppet client over a registry holding a
:class:`~MetaPuppet.transport.FakePuppetLink`, which records what would go to Node.
"""

from __future__ import annotations

import base64
import re
from typing import Any

import pytest

from MetaPuppet import snippets
from MetaPuppet.client import PuppetClient
from MetaPuppet.errors import SnippetError
from MetaPuppet.transport import FakePuppetLink, PuppetRegistry
from MetaPuppet.types import (
    Contact,
    Contacts,
    FileBox,
    Friendship,
    Message,
    MessageType,
    Room,
    RoomEvent,
    Rooms,
    chat_of,
    reply_to_sayables,
    sayable_to_wire,
)

from .conftest import message_payload


def make_api(answer: Any = None) -> tuple[PuppetClient, FakePuppetLink]:
    link = FakePuppetLink("bot", answer=answer)
    registry = PuppetRegistry()
    registry.attach(link)
    return PuppetClient(registry), link


def exec_calls(link: FakePuppetLink) -> list[tuple[str, Any]]:
    return [(data["code"], data["args"]) for event, data in link.calls if event == "exec"]


async def test_a_message_answers_its_talker_and_a_room_message_its_room():
    api, link = make_api()
    direct = Message(api, "bot", message_payload("hello", talker="alice"))
    in_room = Message(api, "bot", message_payload("hi all", talker="bob", room="team@chatroom"))
    await direct.say("hi alice")
    await in_room.reply("hi room")
    assert link.said() == [
        {
            "kind": "contact",
            "to": "alice",
            "sayable": {"type": "text", "text": "hi alice"},
            "mentions": [],
        },
        {
            "kind": "room",
            "to": "team@chatroom",
            "sayable": {"type": "text", "text": "hi room"},
            "mentions": [],
        },
    ]


def test_message_properties_come_from_the_payload():
    api, _ = make_api()
    payload = message_payload("@Bot\u2005ping", talker="bob", room="r1", mentionSelf=True)
    payload["timestamp"] = 1_700_000_000_000
    message = Message(api, "bot", payload)
    assert message.talker == Contact(api, "bot", "bob")
    assert message.talker.name == "Bob"
    assert message.room == Room(api, "bot", "r1")
    assert message.conversation_id == "r1" and message.room_id == "r1"
    assert message.mention_self and message.mention_text == "ping"
    assert message.type is MessageType.Text
    assert message.date is not None and message.date.year == 2023
    assert Message(api, "bot", {"type": 99}).type is MessageType.Unknown


async def test_room_say_mentions_contacts_and_ids():
    api, link = make_api()
    room = Room(api, "bot", "team@chatroom")
    await room.say("lunch?", Contact(api, "bot", "alice"), "bob")
    assert link.said()[0]["mentions"] == ["alice", "bob"]
    with pytest.raises(TypeError, match="Contact, a Room or an id"):
        await room.say("x", 42)  # type: ignore[arg-type]
    assert len(link.said()) == 1  # nothing was sent for the bad mention


async def test_contact_alias_get_and_set_run_the_constant_snippets_with_data_in_args():
    api, link = make_api(lambda e, d: {"ok": True, "result": "Ally"})
    alice = Contact(api, "bot", "alice")
    assert await alice.alias() == "Ally"
    assert await alice.alias("'; drop everything; '") == "'; drop everything; '"
    assert exec_calls(link) == [
        (snippets.CONTACT_ALIAS_GET, {"id": "alice"}),
        (snippets.CONTACT_ALIAS_SET, {"id": "alice", "alias": "'; drop everything; '"}),
    ]


async def test_room_topic_set_updates_the_view_and_members_become_contacts():
    members = [{"type": "Contact", "id": "a", "payload": {"name": "A"}}, {"id": ""}, None]

    def answer(event: str, data: Any) -> Any:
        if data["code"] == snippets.ROOM_MEMBER_ALL:
            return {"ok": True, "result": members}
        return {"ok": True, "result": True}

    api, link = make_api(answer)
    room = Room(api, "bot", "r1", {"topic": "old"})
    assert await room.topic("new") == "new" and room.topic_text == "new"
    found = await room.member_all()
    assert [(c.id, c.name) for c in found] == [("a", "A")]  # malformed entries are skipped


async def test_to_file_box_decodes_the_serialised_file():
    blob = bytes(range(256))
    wire = {
        "name": "x.bin",
        "mimeType": "application/octet-stream",
        "base64": base64.b64encode(blob).decode(),
    }
    api, link = make_api(lambda e, d: {"ok": True, "result": wire})
    box = await Message(api, "bot", {"id": "m1"}).to_file_box()
    assert box.data == blob and box.name == "x.bin"
    assert exec_calls(link) == [(snippets.MESSAGE_FILE, {"id": "m1"})]


async def test_a_failure_on_the_node_side_is_a_snippet_error_naming_it():
    error = {"kind": "runtime", "name": "TypeError", "message": "no such room", "stack": "at x"}
    api, _ = make_api(lambda e, d: {"ok": False, "error": error})
    with pytest.raises(SnippetError, match="TypeError: no such room") as caught:
        await Room(api, "bot", "r1").quit()
    assert caught.value.bot == "bot" and caught.value.stack == "at x"


async def test_lookups_send_regexes_as_source_and_flags_and_the_only_bot_names_the_result():
    wire = {"type": "Contact", "id": "c1", "payload": {"name": "Carol"}}
    api, link = make_api(lambda e, d: {"ok": True, "result": wire})
    found = await Contacts(api).find(name=re.compile("^car", re.IGNORECASE))
    assert found == Contact(api, "bot", "c1") and found.name == "Carol"
    assert exec_calls(link)[0][1]["query"]["name"] == {"source": "^car", "flags": "i"}
    with pytest.raises(TypeError, match="str or a compiled regex"):
        await Rooms(api).find(topic=42)  # type: ignore[arg-type]


def test_sayables_and_replies():
    assert sayable_to_wire("hi") == {"type": "text", "text": "hi"}
    api, _ = make_api()
    with pytest.raises(TypeError, match="Room cannot be sent"):
        sayable_to_wire(Room(api, "bot", "r1"))
    with pytest.raises(TypeError, match="cannot say a int"):
        sayable_to_wire(3)
    assert reply_to_sayables(["a", None, {"wx_msg_type": "TEXT", "text": "b"}]) == ["a", "b"]
    box = reply_to_sayables({"wx_msg_type": "FILE", "base64": "aGk=", "name": "hi.txt"})[0]
    assert isinstance(box, FileBox) and box.data == b"hi"


def test_one_chat_key_for_every_event_kind():
    assert chat_of("message", {"roomId": "r1", "talkerId": "a"}) == "r1"
    assert chat_of("message", {"talkerId": "a"}) == "a"
    assert chat_of("message", {"self": True, "talkerId": "me", "listenerId": "a"}) == "a"
    assert chat_of("friendship", {"contactId": "a"}) == "a"
    assert chat_of("room-join", {"roomId": "r1"}) == "r1"
    assert chat_of("login", {}) is None
    api, _ = make_api()
    assert Friendship(api, "bot", {"contactId": "a"}).contact.id == "a"
    event = RoomEvent(api, "bot", "room-join", {"roomId": "r1", "inviteeIdList": ["x", "y"]})
    assert [c.id for c in event.invitees] == ["x", "y"] and event.room.id == "r1"
