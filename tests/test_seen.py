"""The handled-events stores (MetaPuppet/seen.py): what a SIGKILL leaves is enough."""

from __future__ import annotations

import os
from pathlib import Path

from MetaPuppet.seen import FileSeenStore, MemorySeenStore

SAY = [{"action": "say", "send_id": "e1#0", "to": "alice", "kind": "contact"}]


async def test_memory_store_answers_a_handled_event_with_its_actions_and_is_bounded():
    store = MemorySeenStore(max_ids=3, max_actions=2)
    assert await store.lookup("e1") is None
    await store.record("e1", SAY)
    await store.record("e2", None)
    assert await store.lookup("e1") == SAY
    assert await store.lookup("e2") == []  # handled, nothing to repeat
    for n in range(3, 6):
        await store.record(f"e{n}", None)
    assert len(store) == 3 and await store.lookup("e1") is None  # the oldest went first


async def test_a_killed_process_leaves_a_journal_the_next_one_reads(tmp_path: Path):
    store = FileSeenStore(tmp_path)
    store.open()
    await store.record("e1", SAY)
    await store.record("e2", None)
    # no close(): as after a SIGKILL, only the journal is there
    journal = tmp_path / "seen-event-ids.jsonl"
    assert journal.stat().st_mode & 0o777 == 0o600
    with journal.open("ab") as damaged:
        damaged.write(b'{"i": "e3", "x": [')  # a line cut by the crash
    again = FileSeenStore(tmp_path)
    again.open()
    assert await again.lookup("e1") == SAY
    assert await again.lookup("e2") == []
    assert await again.lookup("e3") is None


async def test_records_of_one_turn_go_out_in_one_write(tmp_path: Path, monkeypatch):
    import asyncio

    store = FileSeenStore(tmp_path)
    store.open()
    writes: list[int] = []
    real = os.write

    def counting(fd: int, data: bytes) -> int:
        writes.append(len(data))
        return real(fd, data)

    monkeypatch.setattr(os, "write", counting)
    await asyncio.gather(*(store.record(f"e{n}", None) for n in range(20)))
    assert len(writes) == 1
    assert len((tmp_path / "seen-event-ids.jsonl").read_text().splitlines()) == 20


async def test_rotation_keeps_the_last_ids_and_a_stop_folds_them(tmp_path: Path):
    store = FileSeenStore(tmp_path, max_ids=5)
    store.open()
    for n in range(12):
        await store.record(f"e{n}", SAY if n == 11 else None)
    assert (tmp_path / "seen-event-ids.1.jsonl").is_file()
    reopened = FileSeenStore(tmp_path, max_ids=5)
    reopened.open()
    assert await reopened.lookup("e7") == [] and await reopened.lookup("e11") == SAY
    assert await reopened.lookup("e2") is None
    assert reopened.close() is None
    assert not (tmp_path / "seen-event-ids.jsonl").exists()
    folded = FileSeenStore(tmp_path, max_ids=5)
    folded.open()
    assert await folded.lookup("e11") == SAY and await folded.lookup("e7") == []


async def test_a_reply_with_a_lone_surrogate_is_recorded_and_read_back(tmp_path: Path):
    odd = [{"action": "say", "send_id": "e1#0", "sayable": {"type": "text", "text": "\ud83d"}}]
    store = FileSeenStore(tmp_path)
    store.open()
    await store.record("e1", odd)
    again = FileSeenStore(tmp_path)
    again.open()
    assert await again.lookup("e1") == odd
    failure = again.close()  # UTF-8 cannot hold it: named, not raised
    assert failure is None or "handled event ids" in failure.what


async def test_an_unwritable_folder_keeps_the_ids_in_memory(tmp_path: Path, caplog):
    folder = tmp_path / "ro"
    folder.mkdir(mode=0o500)
    store = FileSeenStore(folder / "data")
    store.open()
    await store.record("e1", None)  # does not raise: the handling goes on
    assert await store.lookup("e1") == []
    if os.geteuid() != 0:  # root writes anywhere
        assert "cannot write the handled event ids" in caplog.text


# --------------------------------------------------------------------- send ids


class _TwoSays:
    """A robot whose handler says twice itself and returns a reply."""

    handle_self_messages = False

    def __init__(self) -> None:
        from MetaPuppet import RobotBase

        class Bot(RobotBase):
            async def on_message(self, message):
                await message.say("one")
                await message.say("two")
                return "three"

        self.robot = Bot()


async def test_a_handler_run_again_makes_the_same_send_ids(server_factory):
    from .conftest import FakePuppet, make_event, message_payload, settle

    event = make_event("message", message_payload("hi"))
    ids = []
    for _ in range(2):  # two servers, as before and after a crash that lost the records
        server = await server_factory(_TwoSays().robot, rate_limiter=None)
        puppet = FakePuppet(bot="fake")
        server.attach_puppet(puppet)
        await server.handle_event(event)
        await settle(server)
        ids.append([data["send_id"] for name, data in puppet.calls if name == "act"])
        assert [s["sayable"]["text"] for s in puppet.said()] == ["one", "two", "three"]
    assert ids[0] == ids[1] == [f"{event.id}#0", f"{event.id}#1", f"{event.id}#2"]
    # a send outside any handling gets a random id
    await server.say("alice", "later", bot="fake")
    assert [d["send_id"] for n, d in puppet.calls if n == "act"][-1].startswith("r:")


async def test_the_reply_travels_in_the_acknowledgement_and_a_copy_gets_the_same(
    server_factory,
):
    from MetaPuppet.presence import ClientInfo

    from .conftest import FakePuppet, message_payload

    server = await server_factory(_TwoSays().robot, rate_limiter=None)
    puppet = FakePuppet(bot="fake")
    server.attach_puppet(puppet)
    info = ClientInfo(sid="s1", role="puppet", bot="fake", remote="127.0.0.1")
    envelope = {"id": "e9", "bot": "fake", "name": "message", "ts": 1}
    envelope["payload"] = message_payload("hi")
    ack = await server.pipeline.receive(info, envelope)
    assert ack["ok"] is True
    # the handler's own says went at once; the returned reply is in the ack
    assert [d["send_id"] for n, d in puppet.calls if n == "act"] == ["e9#0", "e9#1"]
    assert [(a["send_id"], a["sayable"]["text"]) for a in ack["actions"]] == [("e9#2", "three")]
    again = await server.pipeline.receive(info, envelope)  # re-sent after a lost ack
    assert again == ack and len(puppet.calls) == 2  # answered from the record, not run
