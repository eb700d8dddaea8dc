"""Change the bot's signature to "Hello Human!" (the original project's first example).

Run the server with this script, then the Node client in another terminal:

    python example/hello_human.py
    metapuppet client
"""

from MetaPuppet.core.SweetSocketServer import SweetSocketServer
from MetaPuppet.core.TestBot import TestBot


def hello_human(server: SweetSocketServer) -> None:
    server.change_self_signature("Hello Human!")
    print("signature changed to 'Hello Human!'", flush=True)


if __name__ == "__main__":
    a_bot = TestBot(name="test")
    a_server = SweetSocketServer(robot=a_bot, num_async_threads=1, debug_mode=True)
    a_server.run()

    print("Waiting for the Node client (start it with `metapuppet client`)...", flush=True)
    a_server.wait_for_puppet(timeout=120)

    hello_human(a_server)
    a_server.shutdown()
