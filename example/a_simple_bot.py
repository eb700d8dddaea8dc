"""A bot that answers every message with its text reversed and greets new friends.

The original project's a_simple_bot, unchanged in spirit: it overrides the original hooks
`_process_message` and `_process_friend_invitation`, which receive the original dicts.

    python example/a_simple_bot.py
    metapuppet client
"""

import time

from MetaPuppet.core.RobotBase import RobotBase
from MetaPuppet.core.SweetSocketServer import SweetSocketServer


class MyBot(RobotBase):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)

    async def _process_message(self, message, verbose=False):
        return_msg = None
        if "payload" in message and "text" in message["payload"]:
            return_msg = message["payload"]["text"][::-1]
        return return_msg

    async def _process_friend_invitation(self, message, verbose=False):
        return {"wx_msg_type": "TEXT", "path": "Hello Human!"}


if __name__ == "__main__":
    a_bot = MyBot(name="test")
    a_server = SweetSocketServer(robot=a_bot, num_async_threads=1, debug_mode=True)
    a_server.run()

    print("Waiting for the Node client (start it with `metapuppet client`)...", flush=True)
    try:
        bot_name = a_server.wait_for_puppet(timeout=120)
        print(f"bot {bot_name!r} connected; answering messages until Ctrl-C", flush=True)
        while True:
            time.sleep(1)
    except KeyboardInterrupt:
        a_server.shutdown()
