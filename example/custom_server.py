"""Subclass the server to talk to your own web clients (the original project's pattern).

`process_socket_message` sees `SOCKET_INFO` envelopes (a client announcing itself) and
`process_custom_message` everything else a web client sends on `message`.

    python example/custom_server.py
    python example/web_client.py        # connects with the web role and the same token
"""

import time

from MetaPuppet.core.SweetSocketServer import SweetSocketServer
from MetaPuppet.core.TestBot import TestBot


class MyServer(SweetSocketServer):
    async def process_socket_message(self, sid, message, verbose=False):
        sender = message["sender"]
        room_name = self.wx_room if sender.startswith("wx_") else sender
        if message.get("text") == "CONNECTED":
            self.sio.enter_room(sid, room_name)
            self.add_room(sender=sender, room_name=room_name)
            self.send_message_to_client({"text": f"welcome, {sender}"}, room_name=room_name)

    async def process_custom_message(self, sid, message, verbose=False):
        # answer in the sender's room with the text reversed
        room_name = self.rooms.get(message["sender"])
        if room_name is not None and isinstance(message.get("text"), str):
            self.send_message_to_client({"text": message["text"][::-1]}, room_name=room_name)


if __name__ == "__main__":
    a_server = MyServer(robot=TestBot(name="test"), num_async_threads=1, debug_mode=False)
    a_server.run()
    print(f"serving web clients on {a_server.url}; Ctrl-C stops", flush=True)
    try:
        while True:
            time.sleep(1)
    except KeyboardInterrupt:
        a_server.shutdown()
