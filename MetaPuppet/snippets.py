"""Every TypeScript snippet the Python side sends, in one place.

Each is constant text: the body of an async function that sees ``bot``, ``args``,
``FileBox`` and ``log`` on the Node side. Caller data travels in ``args`` and is never
formatted into a snippet, so nothing a chat contact or a web client sends becomes code.
"""

from __future__ import annotations

from typing import Any, Final

__all__ = [
    "ACCEPT_FRIENDSHIP_JSON",
    "CALL_FUNCTION",
    "CONTACT_ALIAS_GET",
    "CONTACT_ALIAS_SET",
    "CONTACT_RELOAD",
    "CURRENT_USER",
    "FIND",
    "FRIENDSHIP_ACCEPT",
    "LIST_CONTACTS",
    "LIST_ROOMS",
    "LOAD",
    "MESSAGE_FILE",
    "MESSAGE_FORWARD",
    "MESSAGE_RECALL",
    "MESSAGE_TYPES",
    "MESSAGE_URL_LINK",
    "MOCK_FRIEND",
    "MOCK_SAY",
    "ROOM_ADD",
    "ROOM_ALIAS",
    "ROOM_ANNOUNCE_GET",
    "ROOM_ANNOUNCE_SET",
    "ROOM_HAS",
    "ROOM_INVITATION_ACCEPT",
    "ROOM_MEMBER",
    "ROOM_MEMBERS",
    "ROOM_MEMBER_ALL",
    "ROOM_OWNER",
    "ROOM_QUIT",
    "ROOM_RELOAD",
    "ROOM_REMOVE",
    "ROOM_TOPIC_GET",
    "ROOM_TOPIC_SET",
    "SAY",
    "SELF_NAME",
    "SELF_SIGNATURE",
    "SNAPSHOT",
    "TYPING",
    "required_capability",
]

# ---------------------------------------------------------------------------- sending

SAY: Final = """
const s = args.sayable
const conversation = args.kind === 'room' ? bot.Room.load(args.to) : bot.Contact.load(args.to)
await conversation.ready()
let thing
switch (s.type) {
  case 'text': thing = s.text; break
  case 'file': thing = FileBox.fromBase64(s.base64, s.name); break
  // downloaded by the client under client.file_download (no private addresses, bounded)
  case 'file_url': thing = await metapuppet.fileFromUrl(s.url, { name: s.name }); break
  case 'url': thing = new bot.UrlLink(s.payload); break
  case 'mini_program': thing = new bot.MiniProgram(s.payload); break
  case 'contact': {
    thing = bot.Contact.load(s.id)
    await thing.ready()
    break
  }
  default: throw new Error(`cannot say a sayable of type ${s.type}`)
}
const mentions = []
if (args.kind === 'room' && s.type === 'text') {
  for (const id of args.mentions) {
    const contact = bot.Contact.load(id)
    await contact.ready()
    mentions.push(contact)
  }
}
const send = () => conversation.say(thing, ...mentions)
// a channel with per-message send windows (ilink) answers with that message's context
const inContext = bot.puppet.metapuppetWithContext
const deliver = async () => {
  const sent = args.replyTo && typeof inContext === 'function'
    ? await inContext.call(bot.puppet, args.replyTo, send)
    : await send()
  return sent ? sent.id : null
}
return await deliver()
"""

TYPING: Final = """
const typing = bot.puppet.metapuppetTyping
if (typeof typing !== 'function') return false
return await typing.call(bot.puppet, args.to, args.on)
"""

CALL_FUNCTION: Final = """
const scope = { bot, FileBox }
const parts = args.path.split('.')
if (!(parts[0] in scope)) throw new Error(`${parts[0]} is not available: start with bot or FileBox`)
let owner = null
let target = scope[parts[0]]
for (const part of parts.slice(1)) {
  if (target === null || target === undefined) throw new Error(`${args.path}: ${part} of nothing`)
  owner = target
  target = target[part]
}
if (typeof target !== 'function') throw new Error(`${args.path} is not a function`)
return await target.apply(owner, args.params)
"""

CURRENT_USER: Final = "return bot.currentUser"

SNAPSHOT: Final = """
const contacts = await bot.Contact.findAll()
const rooms = await bot.Room.findAll()
const roomRecords = []
for (const room of rooms) {
  let members = []
  try {
    members = (await room.memberAll()).map((member) => member.id)
  } catch (error) {
    log.warn(`snapshot: members of ${room.id}: ${error}`)
  }
  roomRecords.push({ id: room.id, payload: room.payload ?? null, memberIds: members })
}
return {
  user: bot.isLoggedIn ? bot.currentUser : null,
  contacts: contacts.map((contact) => ({ id: contact.id, payload: contact.payload ?? null })),
  rooms: roomRecords,
}
"""

# ---------------------------------------------------------------------------- views

_CONTACT = "const contact = bot.Contact.load(args.id)\nawait contact.ready()\n"
_ROOM = "const room = bot.Room.load(args.id)\nawait room.ready()\n"
_MEMBER = "const member = bot.Contact.load(args.contactId)\nawait member.ready()\n"
_MESSAGE = "const message = bot.Message.load(args.id)\nawait message.ready()\n"

CONTACT_RELOAD: Final = _CONTACT + "await contact.sync()\nreturn contact"
CONTACT_ALIAS_GET: Final = _CONTACT + "return (await contact.alias()) ?? null"
CONTACT_ALIAS_SET: Final = _CONTACT + "await contact.alias(args.alias)\nreturn true"
SELF_SIGNATURE: Final = "await bot.currentUser.signature(args.signature)\nreturn true"
SELF_NAME: Final = "await bot.currentUser.name(args.name)\nreturn true"
ROOM_RELOAD: Final = _ROOM + "await room.sync()\nreturn room"
ROOM_TOPIC_GET: Final = _ROOM + "return await room.topic()"
ROOM_TOPIC_SET: Final = _ROOM + "await room.topic(args.topic)\nreturn true"
ROOM_MEMBER_ALL: Final = (
    _ROOM + "return args.name == null ? await room.memberAll() : await room.memberAll(args.name)"
)
ROOM_MEMBER: Final = _ROOM + "return (await room.member(args.name)) ?? null"
ROOM_HAS: Final = _ROOM + _MEMBER + "return await room.has(member)"
ROOM_ADD: Final = _ROOM + _MEMBER + "await room.add(member)\nreturn true"
ROOM_REMOVE: Final = _ROOM + _MEMBER + "await room.remove(member)\nreturn true"
ROOM_QUIT: Final = _ROOM + "await room.quit()\nreturn true"
ROOM_ALIAS: Final = _ROOM + _MEMBER + "return (await room.alias(member)) ?? null"
ROOM_OWNER: Final = _ROOM + "return room.owner() ?? null"
ROOM_ANNOUNCE_GET: Final = _ROOM + "return (await room.announce()) ?? ''"
ROOM_ANNOUNCE_SET: Final = _ROOM + "await room.announce(args.text)\nreturn true"
MESSAGE_FILE: Final = _MESSAGE + "return await message.toFileBox()"
MESSAGE_URL_LINK: Final = _MESSAGE + "const link = await message.toUrlLink()\nreturn link.payload"
MESSAGE_RECALL: Final = _MESSAGE + "return await message.recall()"
MESSAGE_FORWARD: Final = (
    _MESSAGE
    + "const to = args.room ? bot.Room.load(args.to) : bot.Contact.load(args.to)\n"
    + "await to.ready()\n"
    + "const sent = await message.forward(to)\n"
    + "return sent ? sent.id ?? null : null"
)

FRIENDSHIP_ACCEPT: Final = """
const friendship = bot.Friendship.load(args.id)
await friendship.ready()
await friendship.accept()
return true
"""

ROOM_INVITATION_ACCEPT: Final = """
const invitation = bot.RoomInvitation.load(args.id)
await invitation.accept()
return true
"""

# ---------------------------------------------------------------------------- look-ups

FIND: Final = """
const query = {}
for (const key of ['name', 'alias', 'topic']) {
  const value = args.query[key]
  if (value === undefined || value === null) continue
  query[key] = typeof value === 'object' ? new RegExp(value.source, value.flags) : value
}
const kind = args.rooms ? bot.Room : bot.Contact
// an empty query object matches nothing in Wechaty; no query means everyone
const filter = Object.keys(query).length > 0 ? query : undefined
return args.all ? await kind.findAll(filter) : (await kind.find(filter ?? {})) ?? null
"""

LOAD: Final = """
const thing = args.rooms ? bot.Room.load(args.id) : bot.Contact.load(args.id)
try {
  await thing.ready()
} catch (error) {
  return null
}
return thing
"""

# ---------------------------------------------------------------------------- the original's sugar

MESSAGE_TYPES: Final = "return bot.Message.Type ?? null"

ACCEPT_FRIENDSHIP_JSON: Final = """
const friendship = await bot.Friendship.fromJSON(args.payload)
await friendship.accept()
return true
"""

# ---------------------------------------------------------------------------- web actions

LIST_CONTACTS: Final = """
const contacts = await bot.Contact.findAll()
return contacts.map((c) => {
  const p = c.payload ?? {}
  return { id: c.id, name: p.name ?? '', alias: p.alias || null, friend: p.friend ?? null,
           type: p.type ?? null, self: c.self() }
})
"""

LIST_ROOMS: Final = """
const rooms = await bot.Room.findAll()
return rooms.map((r) => {
  const p = r.payload ?? {}
  const members = Array.isArray(p.memberIdList) ? p.memberIdList.length : null
  return { id: r.id, topic: p.topic ?? '', member_count: members }
})
"""

# a different shape from ROOM_MEMBER_ALL, and null (a 404) for a room the bot does not have
ROOM_MEMBERS: Final = """
const room = bot.Room.load(args.roomId)
try {
  await room.ready()
} catch {
  return null
}
const members = await room.memberAll()
return members.map((c) => ({
  id: c.id, name: c.payload?.name ?? '', alias: c.payload?.alias || null,
}))
"""


# ---------------------------------------------------------------------------- mock console
# Only on the mock puppet (``mock`` is the Node client's MockKit there, null elsewhere): a
# mocked contact, found by name or created, says something or asks to be a friend.

_MOCK_CONTACT: Final = """
if (mock === null || mock === undefined) throw new Error('the mock console needs the mock puppet')
const me = bot.currentUser
const known = (await bot.Contact.findAll({ name: args.name })).filter((c) => c.id !== me.id)
const contactId = known.length > 0 ? known[0].id : mock.contact(args.name, args.payload)
const contact = { id: contactId, name: args.name, created: known.length === 0 }
"""

MOCK_SAY: Final = (
    _MOCK_CONTACT
    + """
let room = null
if (args.room !== null) {
  const found = (await bot.Room.findAll({ topic: args.room }))[0]
  if (found === undefined) {
    room = { id: mock.room(args.room, [contactId]), topic: args.room, created: true }
  } else {
    const members = (await found.memberAll()).map((m) => m.id)
    if (!members.includes(contactId)) mock.roomJoin(found.id, [contactId], me.id)
    room = { id: found.id, topic: args.room, created: false }
  }
}
const mention = args.mention && room !== null
const content = args.file !== null ? { file: args.file }
  : { text: mention ? `@${me.name()}\u2005${args.text}` : args.text }
const roomId = room === null ? null : room.id
const messageId = mock.say(contactId, content, roomId, mention ? [me.id] : [])
return { message_id: messageId, contact, room }
"""
)

MOCK_FRIEND: Final = (
    _MOCK_CONTACT
    + """
const friendshipId = mock.friendshipRequest(contactId, args.hello)
return { friendship_id: friendshipId, contact }
"""
)


# ---------------------------------------------------------------------------- capabilities

_REQUIRES: Final[dict[str, str]] = {
    **{
        code: "rooms"
        for code in (
            ROOM_RELOAD,
            ROOM_TOPIC_GET,
            ROOM_TOPIC_SET,
            ROOM_MEMBER_ALL,
            ROOM_MEMBER,
            ROOM_HAS,
            ROOM_ADD,
            ROOM_REMOVE,
            ROOM_QUIT,
            ROOM_ALIAS,
            ROOM_OWNER,
            ROOM_ANNOUNCE_GET,
            ROOM_ANNOUNCE_SET,
            ROOM_INVITATION_ACCEPT,
            LIST_ROOMS,
            ROOM_MEMBERS,
        )
    },
    FRIENDSHIP_ACCEPT: "friendships",
    ACCEPT_FRIENDSHIP_JSON: "friendships",
    LIST_CONTACTS: "contact_list",
    SNAPSHOT: "contact_list",
    MESSAGE_RECALL: "recall",
    MESSAGE_URL_LINK: "url_links",
    CONTACT_ALIAS_GET: "alias",
    CONTACT_ALIAS_SET: "alias",
    TYPING: "typing",
}


def required_capability(code: str, args: Any) -> str | None:
    """The channel capability (``rooms``, ``contact_list`` ...) that running ``code`` with
    ``args`` needs, or None. User snippets need none that MetaPuppet knows of."""
    needed = _REQUIRES.get(code)
    if needed is not None:
        return needed
    if code in (FIND, LOAD) and isinstance(args, dict):
        if args.get("rooms"):
            return "rooms"
        return "contact_list" if code == FIND else None
    return None
