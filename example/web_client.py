"""A web client: the original project's WebClient, with the token MetaPuppet now requires.

It connects to a running MetaPuppet server with the ``web`` role (``connect_sync`` runs the
handshake in which the server and the client both prove they hold the token; the token
itself is never sent), announces itself with the original ``SOCKET_INFO`` / ``CONNECTED``
envelope, prints every ``message`` the server sends it, and subscribes to the bot's
messages, printing each as it arrives::

    python example/web_client.py                      # url and token from config.json
    python example/web_client.py --url http://127.0.0.1:8080 --token "$METAPUPPET_WEB_TOKEN"

It runs until Ctrl+C (or ``--seconds N``).
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
from typing import Any

import socketio

from MetaPuppet import load_config
from MetaPuppet.errors import AuthenticationError
from MetaPuppet.web_client import connect_sync


class WebClient:
    """One Socket.IO web client (python-socketio's blocking client)."""

    def __init__(self, url: str, token: str, sender: str = "web_client") -> None:
        self.url = url
        self.token = token
        self.sender = sender
        self.sio = socketio.Client(reconnection=True)
        self.sio.on("disconnect", self.on_disconnect)
        self.sio.on("message", self.on_message)
        self.sio.on("events", self.on_events)

    def connect(self) -> None:
        connect_sync(self.url, self.token, client=self.sio, on_authenticated=self.on_connect)

    def on_connect(self, answer: dict[str, Any]) -> None:
        """After every handshake (reconnections too): announce, then subscribe."""
        print(f"connected to {self.url}", flush=True)
        self.send({"sender": self.sender, "type": "SOCKET_INFO", "text": "CONNECTED"})
        # background: the subscription's answer arrives on the socket's own thread
        threading.Thread(target=self.subscribe, daemon=True).start()

    def subscribe(self) -> None:
        answer = self.sio.call("subscribe", {"events": ["message", "friendship"]}, timeout=10)
        if not answer.get("ok"):
            print(f"cannot subscribe: {answer.get('message')}", flush=True)

    def on_disconnect(self, *reason: Any) -> None:
        print("disconnected", flush=True)

    def on_message(self, message: Any) -> None:
        print(f"message: {message}", flush=True)

    def on_events(self, events: list[dict[str, Any]]) -> None:
        for event in events:
            payload = event.get("payload") or {}
            talker = (payload.get("talker") or {}).get("name") or payload.get("talkerId")
            print(
                f"{event['bot']} {event['name']}: {talker}: {payload.get('text', '')}", flush=True
            )

    def send(self, message: dict[str, Any]) -> None:
        self.sio.emit("message", message)

    def wait(self, seconds: float | None = None) -> None:
        if seconds is None:
            self.sio.wait()
        else:
            self.sio.sleep(seconds)
            self.sio.disconnect()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Connect to a MetaPuppet server as a web client.")
    parser.add_argument("--url", help="server URL (default: from the config file)")
    parser.add_argument("--token", help="a web token (default: $METAPUPPET_WEB_TOKEN, then config)")
    parser.add_argument("--seconds", type=float, help="disconnect after this many seconds")
    args = parser.parse_args(argv)
    config = load_config()
    url = args.url or f"http://{config.host}:{config.port}"
    token = (
        args.token
        or os.environ.get("METAPUPPET_WEB_TOKEN")
        or config.raw["server"].get("web_token")
        or config.token
    )
    if not token:
        print("no token: pass --token or run `metapuppet init`", file=sys.stderr)
        return 2
    client = WebClient(url, token)
    try:
        client.connect()
    except (AuthenticationError, socketio.exceptions.ConnectionError) as exc:
        print(f"cannot connect to {url}: {exc}", file=sys.stderr)
        return 1
    try:
        client.wait(args.seconds)
    except KeyboardInterrupt:
        client.sio.disconnect()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
