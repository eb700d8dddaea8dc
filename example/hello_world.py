"""The original project's hello_world: the same Wechaty calls, from async code and from threads.

python example/hello_world.py
metapuppet client
"""

import threading

from MetaPuppet.core.RobotBase import RobotBase
from MetaPuppet.core.SocketServerCore import SocketServerCore
from MetaPuppet.core.time_classes import Time
from MetaPuppet.core.utils import run_coroutine_in_new_thread


class MyBot(RobotBase):
    """Answers `$debug text$` (first line) with the rest of the message reversed."""

    async def _process_message(self, message, verbose=False):
        if not (self.server.debug_mode and "payload" in message):
            return None
        lines = message["payload"]["text"].split("\n")
        if len(lines) > 1 and lines[0].strip().lower() == "$debug text$":
            reversed_text = "\n".join(lines[1:])[::-1]
            if reversed_text:
                return {"wx_msg_type": "TEXT", "text": reversed_text}
        return None


# async version: better for many calls at once
async def async_foo(server):
    rooms = await server.async_exec_one_wx_function(
        func_name="bot.Room.findAll", func_paras=[], need_return=True
    )
    print("Time:", Time(), "async_foo on", threading.current_thread().name)
    print("async: len(rooms)", len(rooms))
    return rooms


async def async_bar(server):
    contacts = await server.async_exec_one_wx_function(
        func_name="bot.Contact.findAll", func_paras=[], need_return=True
    )
    print("Time:", Time(), "async_bar on", threading.current_thread().name)
    print("async: len(contacts)", len(contacts))
    return contacts


# sync version: simpler, fine for short tasks in their own thread
def foo(server):
    rooms = server.exec_one_wx_function(
        func_name="bot.Room.findAll", func_paras=[], need_return=True
    )
    print("Time:", Time(), "foo on", threading.current_thread().name)
    print("sync: len(rooms)", len(rooms))
    members = []
    if rooms:
        # the room id travels as data in `args`, not formatted into the code
        members = server.exec_snippet_sync(
            "const a_room = bot.Room.load(args.roomId)\n"
            "await a_room.ready()\n"
            "return await a_room.memberAll()",
            {"roomId": rooms[0]["id"]},
        )
        print("len(members)", len(members))
    return members


def bar(server):
    contacts = server.exec_one_wx_function(
        func_name="bot.Contact.findAll", func_paras=[], need_return=True
    )
    print("Time:", Time(), "bar on", threading.current_thread().name)
    print("sync: len(contacts)", len(contacts))
    return contacts


def get_userself(server):
    contact_self = server.exec_one_wx_function(
        func_name="bot.userSelf", func_paras=[], need_return=True
    )
    print("contact_self", contact_self["payload"]["name"])
    return contact_self


if __name__ == "__main__":
    a_bot = MyBot(name="test")
    a_server = SocketServerCore(robot=a_bot, num_async_threads=1, debug_mode=True)
    a_server.run()

    print("Waiting for the Node client (start it with `metapuppet client`)...", flush=True)
    a_server.wait_for_puppet(timeout=120)

    workers = [
        run_coroutine_in_new_thread(async_foo(a_server)),
        run_coroutine_in_new_thread(async_bar(a_server)),
    ]
    for target in (foo, bar, get_userself):
        worker = threading.Thread(target=target, args=(a_server,))
        worker.start()
        workers.append(worker)
    for worker in workers:
        worker.join(60)
    print("hello_world done", flush=True)
    a_server.shutdown()
