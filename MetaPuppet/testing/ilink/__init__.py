"""An offline simulator of Tencent's official WeChat bot HTTP API ("iLink"), for tests.

Real HTTP on loopback (aiohttp), real AES-128-ECB (``cryptography``), the real paths, field
names, status codes and error shapes, learned from the official client
(``Tencent/openclaw-weixin``) and CowAgent (``zhayujie/chatgpt-on-wechat``). A client that
works against it should work against ``https://ilinkai.weixin.qq.com``::

    from MetaPuppet.testing.ilink import ILinkSimulator

    async with ILinkSimulator() as sim:           # sim.base_url, sim.cdn_base_url
        ...start the client against sim.base_url / sim.cdn_base_url...
        await sim.wait_qr()                        # the client fetched a QR code
        alice = sim.create_user("Alice")
        alice.scan(); sim.confirm()                # the client's poll answers "confirmed"
        alice.send_text("hello")                   # the client's getupdates returns it
        [reply] = await alice.wait_sent(1)         # what the bot sent, media decrypted
        assert reply.text == "olleh"

Standalone, for tests in other processes (the Node puppet's)::

    python -m MetaPuppet.testing.ilink [--port P] [--redirect-port P]
                                       [--updates-hold S] [--qr-hold S] [--small-ids]

prints ONE JSON line on stdout, then serves until SIGTERM / SIGINT::

    {"base_url": "http://127.0.0.1:PORT", "cdn_base_url": "http://127.0.0.1:PORT/c2c",
     "control_url": "http://127.0.0.1:PORT/_sim", "control_token": "...",
     "redirect_base_url": "http://127.0.0.1:PORT2", "redirect_host": "127.0.0.1:PORT2", "pid": N}

The service (what a client sees)
================================
All ``ilink/bot/*`` answers are JSON at HTTP 200 unless a fault is injected; failures are
``ret`` / ``errcode`` in the body.

- ``GET|POST ilink/bot/get_bot_qrcode?bot_type=3`` (older official clients GET; newer POST
  ``{"local_token_list": [...]}``, no ``base_info``) -> ``{"qrcode", "qrcode_img_content"}``.
  ``qrcode`` is 32 hex; the image content is a ``https://liteapp.weixin.qq.com/q/…`` link.
- ``GET ilink/bot/get_qrcode_status?qrcode=…[&verify_code=…]`` long-polls up to ``qr_hold_s``
  (default 1 s; the real one ~35 s). A new status is answered at once; a poll that times out
  repeats the current status (``{"status": "wait"}`` while nobody scanned). Statuses:
  ``wait``, ``scaned``, ``need_verifycode`` (the client polls again with ``&verify_code=``;
  right -> ``scaned``, wrong -> ``need_verifycode`` again, after ``verify_attempts`` wrong ->
  ``verify_code_blocked``: fetch a new QR), ``confirmed`` (``bot_token``, ``ilink_bot_id``
  ``…@im.bot``, ``ilink_user_id`` of the scanner ``…@im.wechat``, ``baseurl``),
  ``expired`` (after ``qr_ttl_s`` = 120 s of the injected clock, or forced; unknown qrcodes
  too), ``scaned_but_redirect`` (+ ``redirect_host``: the main host answers only this from
  then on; the login goes on at the redirect host, which serves the whole API on a second
  port. The real client polls ``https://<redirect_host>``; the simulator's redirect host
  speaks plain HTTP, so a client under test keeps the scheme of its configured base URL),
  ``binded_redirect`` (the scanner's live token was in ``local_token_list``: keep it).
  A confirmed login of a user who already owns a bot gives that bot (same ``ilink_bot_id``)
  a new token; the old token answers -14 from then on (one WeChat user binds one instance).
- ``POST`` ``getupdates``, ``sendmessage``, ``getuploadurl``, ``getconfig``, ``sendtyping``,
  ``msg/notifystart``, ``msg/notifystop`` (the official stop notification) need the headers
  ``Content-Type: application/json``, ``AuthorizationType: ilink_bot_token``,
  ``X-WECHAT-UIN: base64(decimal text of a uint32)``, ``Authorization: Bearer <bot_token>``
  and ``base_info: {"channel_version": str, "bot_agent"?: str}`` in the body. A missing,
  unknown or expired token answers ``{"errcode": -14, "errmsg": "session timeout"}`` (what
  probes of the real service report; ``expired_shape`` = ``ret`` / ``both`` give
  ``ret: -14`` too). Other header/body breaches are recorded in ``sim.violations`` and, with
  ``strict`` (default), answered ``{"ret": -1, "errmsg": "<endpoint>: <what is wrong>"}`` —
  the real service accepts a missing ``base_info`` (CowAgent omits it), the simulator
  holds clients to the official client's shape; ``require_base_info=False`` relaxes it.
- ``getupdates {get_updates_buf}`` holds up to ``updates_hold_s`` (default 2 s) until a
  message is pending, then answers ``{"ret": 0, "msgs": [...], "get_updates_buf": <cursor>,
  "longpolling_timeout_ms": <the hold in ms>}`` (at most ``max_batch`` = 100 messages). The
  cursor is opaque; presenting it acknowledges everything up to it, and messages after it
  come next (a restarted reader with its saved cursor neither loses nor repeats). ``""``
  (``empty_cursor``): ``unacked`` (default) resumes after the last cursor the client
  presented; ``all`` replays the retained backlog; ``new`` skips to now. A cursor the
  simulator did not issue is treated as ``""`` and recorded as a violation. An expiry
  during the hold answers -14 at once.
- Messages (``WeixinMessage``): ``seq``, ``message_id`` (a JSON integer; above 2**53 by
  default, ``big_message_ids=False`` for small ones — consecutive ids differ by 1, so a
  client that parses them as doubles merges two messages), ``from_user_id``, ``to_user_id``,
  ``client_id``, ``create_time_ms``, ``update_time_ms``, ``session_id``, ``message_type: 1``,
  ``message_state: 2``, ``item_list``, ``context_token``. Items: 1 ``text_item.text``
  (``ref_msg: {message_item, title, svr_id?}`` for a quote), 2 ``image_item {media,
  aeskey?, mid_size}``, 3 ``voice_item {media, encode_type: 6 (SILK), bits_per_sample,
  sample_rate, playtime, text?}``, 4 ``file_item {media, file_name, md5, len (a string)}``,
  5 ``video_item {media, video_size, play_length, video_md5}``. ``media`` is
  ``{encrypt_query_param, aes_key?, encrypt_type: 1, full_url?}``; ``full_url`` is
  ``<cdn>/download?encrypted_query_param=…`` (``media_full_url=False`` leaves it out). Keys
  (``key_form``): ``auto`` (default, as the real service: images carry ``aeskey`` hex +
  ``aes_key`` base64(raw 16 bytes); voice/file/video ``aes_key`` base64(32 hex chars)),
  ``hex``, ``base64_raw``, ``base64_hex``; hostile: ``wrong`` (well formed, fails to decrypt),
  ``garbage``.
- ``sendmessage {msg: {to_user_id, client_id, message_type: 2, message_state, item_list,
  context_token}}``: shape errors -> ``ret: -1`` naming the field; then the send budget
  (``_budget.py``): the token must have been issued to that user by this bot, at most
  ``per_message`` (10) sends per token, within ``window_s`` (24 h of the injected clock) of
  that user message's ``create_time_ms``; a refusal answers ``{"ret": -2, "errmsg": ""}``
  and is recorded in ``sim.refused`` with the reason. A missing token is refused the same
  way (``missing_token="drop"``: success answered, nothing delivered — the silent loss of
  Tencent/openclaw-weixin PR #247). Success answers ``{}`` (``send_ok_body="ret0"``:
  ``{"ret": 0}``); both are reported from the real service. Items may be several per
  request (the official client sends one). Media items are downloaded from the CDN and
  decrypted with the item's key (any of the three forms), the result or the error kept.
- ``getuploadurl {filekey, media_type 1 image|2 video|3 file|4 voice, to_user_id, rawsize,
  rawfilemd5, filesize (= PKCS7-padded rawsize), aeskey (32 hex), no_need_thumb}`` checks
  every field (``ret: -1`` naming the problem) and answers ``{"upload_param",
  "upload_full_url"}`` (``upload_url_style`` = ``param`` / ``full`` gives only one).
- CDN: ``POST <cdn>/upload?encrypted_query_param=<upload_param>&filekey=<filekey>`` with
  the ciphertext (``application/octet-stream``) answers 200 with header
  ``x-encrypted-param: <download param>`` (goes into ``media.encrypt_query_param``), or 400
  with ``x-error-message`` when the size, the key or the md5 does not match what
  getuploadurl was told. ``GET <cdn>/download?encrypted_query_param=…`` answers the
  ciphertext, 404 for an unknown one.
- ``getconfig {ilink_user_id, context_token?}`` -> ``{"ret": 0, "typing_ticket"}`` (an
  unknown user: ``ret: -1``); ``sendtyping {ilink_user_id, typing_ticket, status: 1|2}`` ->
  ``{"ret": 0}``, recorded per user. ``msg/notifystart|notifystop {base_info}`` ->
  ``{"ret": 0}``, recorded in ``sim.notifications``.

Faults (``sim.add_fault(endpoint, kind, count=1, status=500, seconds=None)``): endpoints are
``ENDPOINTS`` (``getupdates``, ``sendmessage``, …, ``cdn/upload``, ``cdn/download``); kinds:
``http_error`` (``status``), ``hang`` (no answer until the client gives up, ``seconds``
pass, or the simulator stops), ``delay`` (``seconds``, then the real answer), and, around
the real answer, ``not_json`` (an HTML page at 200), ``truncated_json``, ``empty_body``,
``missing_fields`` (only ``ret`` kept), ``wrong_types`` (every value of another JSON type),
``huge_cursor`` (getupdates: a 10 MB ``get_updates_buf``; the messages stay pending). On
the CDN, the JSON kinds give a 200 without ``x-encrypted-param`` (upload) or 32 random bytes
(download). Hostile messages (``user.send_hostile(kind)``): ``many_items`` (10,000 items),
``bad_media_key``, ``garbage_media_key``, ``wrong_types``, ``missing_fields``.

Where the sources disagree (the default first; the other reading is a setting)
==============================================================================
- -14 shape: ``errcode`` only (types.ts and probes of the real service); ``expired_shape``.
- sendmessage success: ``{}`` (QwenPaw PR #3685) vs ``{"ret": 0}`` (openclaw-weixin #278);
  ``send_ok_body``. A client must treat a missing ``ret`` as 0 and any other ``ret`` or
  ``errcode`` as a failure.
- Budget: per user message / context_token (#81) vs per user (the quoted rule);
  ``BudgetRules.scope``. Window 24 h from the message's ``create_time_ms`` (#156, #204);
  ``window_s`` for the shorter windows users report (#225, #286, #309).
- No context_token: refused with ``ret -2`` (#216) vs silently dropped (PR #247);
  ``missing_token``.
- get_bot_qrcode: GET (older official, CowAgent) and POST with ``local_token_list`` (newer
  official) are both served. Uploads: POST (official, CowAgent; the README says PUT).
- getuploadurl: ``upload_param`` (CowAgent builds the URL) and ``upload_full_url`` (newer
  official) both given; ``upload_url_style``. Inbound media carry ``full_url`` (newer
  official) and ``encrypt_query_param``; ``media_full_url``.
- ``get_updates_buf=""``: not documented; ``empty_cursor`` (default ``unacked``).
- Header / ``base_info`` checks are stricter than the real service (``strict``,
  ``require_base_info``), so a client that passes here sends what the official one sends.

Python control API
==================
Synchronous methods, to be called on the simulator's event loop (the test's own loop):
``create_user(name) -> WeChatUser`` (``.scan()``, ``.send_text/_image/_voice/_file/_video/
_quote/_items/_hostile(...) -> InboundMessage``, ``.sent()``, ``await .wait_sent(n)``,
``.typing()``), ``scan``, ``confirm``, ``set_qr_state``, ``expire_session``, ``sent_to``,
``typing_events``, ``is_typing``, ``refused``, ``notifications``, ``violations``,
``add_fault`` / ``clear_faults``, ``request_count`` / ``reset_counts``, ``set_budget``,
``configure`` (any :class:`SimSettings` field), ``advance_clock``; coroutines ``wait_qr``,
``login``, ``wait_sent``, ``wait_for``.

HTTP control API (``control_url`` = ``<base_url>/_sim``)
=========================================================
Every call needs ``Authorization: Bearer <control_token>`` (else 401). Bodies and answers are
JSON objects; GET parameters go in the query. Errors: 400 ``{"error": "..."}`` (bad input
or a state that does not allow it), 408 for a wait that timed out. ``*`` = optional.

- ``GET info`` -> base_url, cdn_base_url, redirect_base_url, redirect_host, control_url
- ``POST users {name*}`` -> ``{user: {user_id, name}}``; ``GET users`` -> ``{users: [...]}``
- ``GET accounts`` -> ``{accounts: [{bot_id, owner_id, logged_in, logins, pending, acked_seq,
  last_seq}]}``
- ``GET qr`` -> ``{qrcodes: [{qrcode, qrcode_img_content, status, user_id, verify_code,
  attempts_left, redirect, bot_id, created_ms}]}`` (oldest first)
- ``POST qr/wait {after*, timeout*}`` -> ``{qr}`` once the client has fetched an open QR code
  (newer than the qrcode ``after``); 408 after ``timeout`` (default 5 s, at most 60 s)
- ``POST qr/scan {user_id, qrcode*}`` -> ``{qr}``: scaned, need_verifycode (when the
  ``verify_code`` setting is set) or binded_redirect; ``qrcode`` defaults to the newest open one
- ``POST qr/confirm {qrcode*}`` -> ``{qr, account}`` (the client's next poll: confirmed)
- ``POST qr/state {status, qrcode*, user_id*}`` -> ``{qr}``: force any status;
  ``scaned_but_redirect`` turns the redirect on, ``confirmed`` binds the bot
- ``POST messages {user_id, kind, bot_id*, create_time_ms*, ...}`` -> ``{message: {message_id
  (a string), seq, bot_id, from_user_id, context_token, create_time_ms}}``. By kind:
  ``text {text}``; ``image|voice|file|video {data_b64, key_form*, file_name* (file),
  transcript*, playtime_ms* (voice)}``; ``quote {text, quote_message_id | quote_text,
  title*}``; ``items {items: [raw items]}``. ``create_time_ms`` in the past makes a message
  whose send window may already be closed (a bot catching up after downtime).
- ``POST hostile {user_id, kind, bot_id*}`` -> ``{message}`` (kinds as above)
- ``POST session/expire {bot_id*}`` -> ``{account}``: -14 on every call until a new login
- ``GET sent?user_id&min*&timeout*`` -> ``{sent: [{bot_id, to_user_id, client_id,
  context_token, message_state, at_ms, text, items: [{type, kind, text*, data_b64*, size*,
  file_name*, error*}]}]}``; with ``min`` it waits until that many exist (408 at timeout)
- ``GET refused?user_id*`` -> ``{refused: [{bot_id, to_user_id, context_token, reason,
  dropped, at_ms}]}``; reasons: missing_token, unknown_token, wrong_user, window_closed,
  exhausted
- ``GET typing?user_id`` -> ``{events: [{user_id, status, at_ms}], typing: bool}``
- ``GET budget`` / ``POST budget {per_message*, window_s*, scope*: token|user,
  missing_token*: refuse|drop}`` -> ``{budget}``
- ``GET settings`` / ``POST settings {any SimSettings field}`` -> ``{settings}``
- ``GET faults`` / ``POST faults {endpoint, kind, count*, status*, seconds*}`` -> ``{faults}``;
  ``DELETE faults`` clears them
- ``GET requests`` -> ``{counts: {endpoint: n}, by_host: {"main:getupdates": n, ...}}``;
  ``POST requests/reset`` zeroes them (only ``ilink/bot/*`` and CDN requests are counted)
- ``GET clock`` / ``POST clock/advance {seconds}`` -> ``{now_ms}``
- ``GET notifications`` -> ``{notifications: [{kind: start|stop, bot_id, at_ms}]}``
- ``GET violations`` -> ``{violations: ["getupdates: header X-WECHAT-UIN is missing", ...]}``

Secrets: the control token and bot tokens are never logged; a refused request names what is
wrong without echoing the token.
"""

from __future__ import annotations

from ._budget import BudgetRules, Decision, SendBudget
from ._clock import Clock, ManualClock, OffsetClock
from ._crypto import KEY_FORMS, MediaKeyError, decrypt, encrypt, padded_size, parse_key, present_key
from ._model import (
    ENDPOINTS,
    FAULT_KINDS,
    HOSTILE_KINDS,
    QR_STATUSES,
    BotAccount,
    Fault,
    InboundMessage,
    QrLogin,
    RefusedSend,
    SentItem,
    SentMessage,
    SimSettings,
    SimulatorError,
    SimUser,
    TypingEvent,
)
from ._simulator import ILinkSimulator, WeChatUser

__all__ = [
    "ENDPOINTS",
    "FAULT_KINDS",
    "HOSTILE_KINDS",
    "KEY_FORMS",
    "QR_STATUSES",
    "BotAccount",
    "BudgetRules",
    "Clock",
    "Decision",
    "Fault",
    "ILinkSimulator",
    "InboundMessage",
    "ManualClock",
    "MediaKeyError",
    "OffsetClock",
    "QrLogin",
    "RefusedSend",
    "SendBudget",
    "SentItem",
    "SentMessage",
    "SimSettings",
    "SimUser",
    "SimulatorError",
    "TypingEvent",
    "WeChatUser",
    "decrypt",
    "encrypt",
    "padded_size",
    "parse_key",
    "present_key",
]
