"""The typed Python API against a real Wechaty bot on the mock puppet.

Where the mock cannot do a thing (set an alias, post an announcement, recall), the test
asserts that the right puppet call was made with the right data (the Node test kit records
those calls in ``mock.calls``).
"""

from __future__ import annotations

import asyncio
import os
import re
from datetime import UTC, datetime, timedelta

import pytest
import pytest_asyncio

from MetaPuppet import (
    Contact,
    ContactSelf,
    FileBox,
    FriendshipType,
    MessageType,
    MiniProgram,
    RobotBase,
    Room,
    UrlLink,
)
from MetaPuppet.testing import mock_wechat

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]


class Recorder(RobotBase):
    """Keeps what it receives; answers nothing unless a test asks."""

    auto_accept_friends = False

    def __init__(self) -> None:
        super().__init__()
        self.messages: asyncio.Queue = asyncio.Queue()
        self.friendships: asyncio.Queue = asyncio.Queue()
        self.invitations: asyncio.Queue = asyncio.Queue()
        self.room_events: asyncio.Queue = asyncio.Queue()
        self.legacy: list[dict] = []

    async def on_message(self, message):
        self.legacy.append(message.to_legacy_dict())
        await self.messages.put(message)

    async def on_friendship(self, friendship):
        await self.friendships.put(friendship)

    async def on_room_invite(self, invitation):
        await self.invitations.put(invitation)

    async def on_room_join(self, event):
        await self.room_events.put(event)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def kit():
    robot = Recorder()
    async with mock_wechat(robot) as wx:
        wx.robot = robot
        yield wx


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def people(kit):
    alice = await kit.contact("Alice", gender=2, alias="Ally")
    bob = await kit.contact("Bob", gender=1)
    carol = await kit.contact("Carol", friend=False)
    room = await kit.room("Team", members=[alice, bob])
    return alice, bob, carol, room


@pytest.fixture(autouse=True)
def fresh_queues(kit):
    """Tests share one kit; start each with nothing left over from the one before."""
    for queue in (kit.robot.messages, kit.robot.friendships, kit.robot.invitations):
        while not queue.empty():
            queue.get_nowait()
    for bot in kit.bots.values():
        for queue in bot._replies.values():
            while not queue.empty():
                queue.get_nowait()


async def received(kit, timeout: float = 5.0):
    return await asyncio.wait_for(kit.robot.messages.get(), timeout)


async def calls(kit, method: str) -> list[list]:
    return [c["args"] for c in await kit.bot().puppet_calls(method)]


async def test_message_properties(kit, people):
    alice, bob, carol, room = people
    before = datetime.now(tz=UTC) - timedelta(seconds=5)
    await alice.say("hi there", room=room, mention_bot=True)
    msg = await received(kit)
    assert msg.text.endswith("hi there") and msg.type == MessageType.Text
    assert msg.talker == Contact(kit.server, "mock-bot", alice.id)
    assert msg.talker.name == "Alice"
    assert isinstance(msg.room, Room) and msg.room.id == room.id and msg.room.topic_text == "Team"
    assert msg.listener is None and not msg.is_self
    assert msg.mention_self and [c.id for c in msg.mention_list] == [kit.bot().user_id]
    assert msg.mention_text == "hi there"
    assert msg.date is not None and msg.date > before
    legacy = kit.robot.legacy[-1]
    assert legacy["payload"]["text"] == msg.text
    assert legacy["payload"]["roomId"] == room.id
    assert legacy["payload"]["fromId"] == legacy["payload"]["talkerId"] == alice.id

    await msg.say("answer in the room")
    assert (await room.next_reply()).text == "answer in the room"


async def test_direct_message_listener_and_reply(kit, people):
    alice, *_ = people
    await alice.say("direct")
    msg = await received(kit)
    assert msg.room is None and msg.listener.id == kit.bot().user_id
    assert msg.mention_text == "direct"
    await msg.reply("back to you")
    assert (await alice.next_reply()).text == "back to you"


async def test_forward_and_recall_make_the_right_puppet_calls(kit, people):
    alice, bob, carol, room = people
    await alice.say("forward me")
    msg = await received(kit)
    await msg.forward(bob)
    assert [bob.id, msg.id] in await calls(kit, "messageForward")
    await msg.forward(Room(kit.server, "mock-bot", room.id))
    assert [room.id, msg.id] in await calls(kit, "messageForward")

    # the mock does not report the id of a sent message; its echo carries it
    await Contact(kit.server, "mock-bot", alice.id).say("oops")
    sent_id = (await alice.next_reply()).id
    await kit.bot().server_message(sent_id).recall()
    assert [sent_id] in await calls(kit, "messageRecall")


async def test_files_of_5_mb_travel_both_ways_intact(kit, people, tmp_path):
    alice, *_ = people
    blob = os.urandom(5 * 1024 * 1024)
    await alice.send_file("big.bin", blob)
    msg = await received(kit, timeout=20)
    box = await msg.to_file_box()
    assert box.name == "big.bin" and box.data == blob
    saved = box.save(tmp_path)
    assert saved == tmp_path.resolve() / "big.bin" and saved.read_bytes() == blob

    await Contact(kit.server, "mock-bot", alice.id).say(FileBox.from_bytes(blob, "back.bin"))
    reply = await alice.next_reply(timeout=20)
    assert (await reply.file()).data == blob


async def test_hostile_file_name_saves_inside_the_target(kit, people, tmp_path):
    alice, *_ = people
    await alice.send_file("../../etc/passwd", b"root:x:0:0")
    msg = await received(kit)
    box = await msg.to_file_box()
    target = tmp_path / "inbox"
    saved = box.save(target)
    assert saved.parent == target.resolve() and saved.read_bytes() == b"root:x:0:0"


async def test_contact_properties_alias_and_self(kit, people):
    alice, bob, carol, room = people
    contact = await kit.server.contacts.find(id=alice.id)
    assert contact is not None and contact.name == "Alice"
    assert contact.is_friend is True and contact.gender.name == "Female"
    assert contact.type.name == "Individual"
    assert await contact.alias() == "Ally"
    await contact.alias("Alice W.")
    assert [alice.id, "Alice W."] in await calls(kit, "contactAlias")

    me = await kit.server.current_user()
    assert isinstance(me, ContactSelf) and me.name == "MetaPuppet Bot"
    await me.signature("Hello Human!")
    assert ["Hello Human!"] in await calls(kit, "contactSelfSignature")
    await me.set_name("Renamed Bot")
    assert ["Renamed Bot"] in await calls(kit, "contactSelfName")


async def test_room_methods(kit, people):
    alice, bob, carol, room_mock = people
    room = await kit.server.rooms.find(topic="Team")
    assert room is not None and room.id == room_mock.id
    assert await room.topic() == "Team"
    members = await room.member_all()
    assert {m.id for m in members} == {alice.id, bob.id, kit.bot().user_id}
    assert (await room.member("Bob")).id == bob.id
    assert await room.member("Nobody") is None
    assert await room.has(alice) and not await room.has(carol)
    assert await room.alias(alice) is None

    await room.topic("Team 2")
    assert [room.id, "Team 2"] in await calls(kit, "roomTopic")
    await room.add(carol)
    assert [room.id, carol.id] in await calls(kit, "roomAdd")
    await room.remove(bob)
    assert [room.id, bob.id] in await calls(kit, "roomDel")
    await room.announce("Meeting at 10")
    assert [room.id, "Meeting at 10"] in await calls(kit, "roomAnnounce")

    await room.say("hello", Contact(kit.server, "mock-bot", alice.id))
    reply = await room_mock.next_reply()
    # Wechaty writes the mention into the text; the mock drops the mention id list
    assert reply.text.startswith("@Alice") and reply.text.endswith("hello")

    other = await kit.room("Leaving", members=[alice])
    leaving = await kit.server.rooms.find(id=other.id)
    await leaving.quit()
    assert [other.id] in await calls(kit, "roomQuit")


async def test_look_ups(kit, people):
    alice, bob, carol, room = people
    assert (await kit.server.contacts.find(name="Bob")).id == bob.id
    assert (await kit.server.contacts.find(name=re.compile("^Car"))).id == carol.id
    assert await kit.server.contacts.find(name="Nobody") is None
    assert await kit.server.contacts.find(id="no-such-id") is None
    everyone = {c.id for c in await kit.server.contacts.find_all()}
    assert {alice.id, bob.id, carol.id} <= everyone
    assert {r.id for r in await kit.server.rooms.find_all(topic=re.compile("Team"))} >= {room.id}


async def test_sayables_reach_the_puppet(kit, people):
    alice, bob, *_ = people
    target = Contact(kit.server, "mock-bot", alice.id)
    link = UrlLink(
        url="https://example.org/a?b=`c`", title="T ${x}", description="d", thumbnail_url=""
    )
    await target.say(link)
    sent = await calls(kit, "messageSendUrl")
    assert [
        alice.id,
        {"url": link.url, "title": "T ${x}", "description": "d", "thumbnailUrl": ""},
    ] in sent
    await target.say(MiniProgram({"appid": "wx1", "title": "mini"}))
    assert any(
        a[0] == alice.id and a[1]["appid"] == "wx1"
        for a in await calls(kit, "messageSendMiniProgram")
    )
    await target.say(Contact(kit.server, "mock-bot", bob.id))
    assert [alice.id, bob.id] in await calls(kit, "messageSendContact")


async def test_friendship_object(kit, people):
    dave = await kit.contact("Dave", friend=False)
    friendship_id = await dave.send_friend_request("please add me")
    friendship = await asyncio.wait_for(kit.robot.friendships.get(), 5)
    assert friendship.id == friendship_id and friendship.type == FriendshipType.Receive
    assert friendship.hello == "please add me" and friendship.contact.id == dave.id
    assert not await kit.bot().friendship_accepted(friendship_id)
    await friendship.accept()
    assert await kit.bot().friendship_accepted(friendship_id)


async def test_room_invitation_and_join_events(kit, people):
    alice, bob, *_ = people
    invitation_id = await kit.bot().exec(
        "return mock.roomInvitation(args.inviter, 'Book club', args.members)",
        {"inviter": alice.id, "members": [alice.id, bob.id]},
    )
    invitation = await asyncio.wait_for(kit.robot.invitations.get(), 5)
    assert invitation.id == invitation_id and invitation.topic == "Book club"
    assert invitation.inviter.id == alice.id and invitation.member_count == 2
    await invitation.accept()
    assert await kit.bot().exec("return mock.invitationAccepted(args.id)", {"id": invitation_id})

    erin = await kit.contact("Erin")
    room = await kit.room("Joiners", members=[alice])
    await kit.bot().exec(
        "mock.roomJoin(args.room, [args.erin], args.alice)",
        {"room": room.id, "erin": erin.id, "alice": alice.id},
    )
    event = await asyncio.wait_for(kit.robot.room_events.get(), 5)
    assert event.room.id == room.id and [c.id for c in event.invitees] == [erin.id]


async def test_sweet_server_actions_async_and_sync(kit, people, tmp_path):
    alice, bob, carol, room = people
    server = kit.server
    await server.async_send_wx_msg_text("plain", alice.id, "friend")
    assert (await alice.next_reply()).text == "plain"
    await server.async_send_wx_msg({"wx_msg_type": "TEXT", "text": "to room"}, room.id, "group")
    assert (await room.next_reply()).text == "to room"
    picture = tmp_path / "p.png"
    picture.write_bytes(b"\x89PNG fake")
    await server.async_send_wx_msg_file(str(picture), None, alice.id, "contact")
    assert (await (await alice.next_reply()).file()).data == b"\x89PNG fake"
    await server.async_send_wx_msg_url(
        "desc", "", "title", "https://example.org", alice.id, "contact"
    )
    assert any(a[1]["url"] == "https://example.org" for a in await calls(kit, "messageSendUrl"))
    types = await server.async_get_all_message_types()
    assert types["Text"] == 7 and types["Image"] == 6
    members = await server.async_get_room_members(room.id)
    assert alice.id in {m["id"] for m in members}
    assert await server.async_get_group_alias(alice.id, room.id) is None
    assert await server.async_set_alias(bob.id, "Bobby")
    assert [bob.id, "Bobby"] in await calls(kit, "contactAlias")

    # the blocking twins, from a plain thread
    await asyncio.to_thread(server.change_self_signature, "from a thread")
    assert ["from a thread"] in await calls(kit, "contactSelfSignature")
    await asyncio.to_thread(server.send_wx_msg_text, "sync text", bob.id, "contact")
    assert (await bob.next_reply()).text == "sync text"
    contacts = await asyncio.to_thread(server.exec_one_wx_function, "bot.Contact.findAll", [], True)
    assert alice.id in {c["id"] for c in contacts}

    frank = await kit.contact("Frank", friend=False)
    friendship_id = await frank.send_friend_request("hi")
    friendship = await asyncio.wait_for(kit.robot.friendships.get(), 5)
    await server.async_accept_friend_invitation(friendship.payload)
    assert await kit.bot().friendship_accepted(friendship_id)
