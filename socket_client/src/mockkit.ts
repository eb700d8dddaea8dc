/**
 * MockKit: drives the offline wechaty-puppet-mock from snippets (`mock` in a snippet).
 *
 * Everything takes and returns plain ids so the Python test kit can call it through `exec`
 * with data in `args`. It also records calls to puppet methods the mock ignores (alias,
 * topic, announce, recall, forward, ...) in `calls`, so tests can assert on them.
 */
import { randomUUID } from 'node:crypto'
import { FileBox } from 'file-box'
import { types, type payloads } from 'wechaty'
import type { PuppetMock, mock as mockNs } from 'wechaty-puppet-mock'

type Mocker = mockNs.Mocker
type ContactMock = mockNs.ContactMock
type RoomMock = mockNs.RoomMock

export type SayContent = { text: string } | { file: { name: string; base64: string } }

export interface RecordedCall {
  method: string
  args: unknown[]
}

/**
 * Puppet methods the mock accepts but ignores, with a predicate telling when a call is worth
 * recording (getters such as `roomTopic(id)` are not).
 */
const RECORDED_METHODS: Record<string, (args: unknown[]) => boolean> = {
  contactAlias: (args) => args.length > 1 && args[1] !== undefined,
  contactSelfSignature: () => true,
  contactSelfName: () => true,
  roomTopic: (args) => args.length > 1 && args[1] !== undefined,
  roomAnnounce: (args) => args.length > 1 && args[1] !== undefined,
  roomAdd: () => true,
  roomDel: () => true,
  roomQuit: () => true,
  messageRecall: () => true,
  messageForward: () => true,
  messageSendUrl: () => true,
  messageSendContact: () => true,
  messageSendMiniProgram: () => true,
}

export class MockKit {
  /** The bot's own account (a ContactMock); logged in by `login()` after `bot.start()`. */
  readonly user: ContactMock
  readonly userId: string
  /** Calls to puppet methods the mock ignores, in call order. */
  readonly calls: RecordedCall[] = []

  private readonly friendships = new Map<string, payloads.Friendship>()
  private readonly acceptedFriendships = new Set<string>()
  private readonly invitations = new Map<string, payloads.RoomInvitation>()
  private readonly acceptedInvitations = new Set<string>()

  constructor(
    readonly mocker: Mocker,
    readonly puppet: PuppetMock,
    userName: string,
  ) {
    this.user = mocker.createContact({ name: userName })
    this.userId = this.user.id
    this.patchPuppet()
  }

  /** Logs the bot user in (call after `bot.start()`); Wechaty then emits `login`. */
  login(): void {
    this.mocker.login(this.user)
  }

  /** Creates a contact (a friend unless `payload.friend` says otherwise) and returns its id. */
  contact(name: string, payload: Partial<payloads.Contact> = {}): string {
    requireString(name, 'name')
    return this.mocker.createContact({ friend: true, ...payload, name }).id
  }

  /** Creates a room with those members plus the bot user and returns its id (contains '@'). */
  room(topic: string, memberIds: string[] = []): string {
    requireString(topic, 'topic')
    const memberIdList = unique([...requireIds(memberIds, 'memberIds'), this.userId])
    memberIdList.forEach((id) => this.contactMock(id))
    return this.mocker.createRoom({ topic, memberIdList, adminIdList: [] }).id
  }

  /**
   * Makes contact `fromId` say a text or a file to `toId` (a room id if it contains '@', a
   * contact id otherwise, the bot user when null). Returns the new message id.
   */
  say(fromId: string, content: SayContent, toId: string | null = null, mentionIds: string[] = []): string | null {
    const from = this.contactMock(fromId)
    const conversation = toId === null || toId === undefined ? this.user : this.conversation(toId)
    const something = toSayable(content)
    const mentions = requireIds(mentionIds ?? [], 'mentionIds').map((id) => this.contactMock(id))
    const before = this.mocker.cacheMessagePayload.size
    from.say(something, mentions).to(conversation)
    // The mock does not return the message; it is the last one added to its (ordered) cache.
    if (this.mocker.cacheMessagePayload.size === before) return null
    let last: string | undefined
    for (const id of this.mocker.cacheMessagePayload.keys()) last = id
    if (last === undefined) return null
    if (typeof something !== 'string') {
      // The mock types most files (text/plain, application/pdf, ...) as Unknown and leaves
      // out the file name; real puppets say Attachment/Image/... and give the name. Wechaty
      // reads this very payload object later, so fixing it in place is enough.
      const payload = this.mocker.cacheMessagePayload.get(last)
      if (payload !== undefined) {
        payload.type = fileMessageType(something)
        payload.filename = something.name
      }
    }
    return last
  }

  /** Emits an incoming friend request from `contactId`; returns the friendship id. */
  friendshipRequest(contactId: string, hello = ''): string {
    this.contactMock(contactId)
    const id = `friendship-${randomUUID()}`
    this.friendships.set(id, {
      id,
      contactId,
      hello: String(hello ?? ''),
      type: types.Friendship.Receive,
      timestamp: Date.now(),
      ticket: '',
    })
    this.puppet.emit('friendship', { friendshipId: id })
    return id
  }

  /** True once the bot accepted that friend request. */
  accepted(friendshipId: string): boolean {
    return this.acceptedFriendships.has(friendshipId)
  }

  /** Emits an invitation from `inviterId` to join a room; returns the invitation id. */
  roomInvitation(inviterId: string, topic: string, memberIds: string[] = []): string {
    this.contactMock(inviterId)
    const memberIdList = requireIds(memberIds, 'memberIds')
    const id = `room-invitation-${randomUUID()}`
    this.invitations.set(id, {
      id,
      inviterId,
      topic: String(topic ?? ''),
      avatar: '',
      invitation: '',
      memberCount: memberIdList.length,
      memberIdList,
      receiverId: this.userId,
      timestamp: Date.now(),
    })
    this.puppet.emit('room-invite', { roomInvitationId: id })
    return id
  }

  /** True once the bot accepted that room invitation. */
  invitationAccepted(roomInvitationId: string): boolean {
    return this.acceptedInvitations.has(roomInvitationId)
  }

  /** Adds contacts to a room and emits `room-join`. */
  roomJoin(roomId: string, inviteeIds: string[], inviterId: string): void {
    const room = this.roomMock(roomId)
    const invitees = requireIds(inviteeIds, 'inviteeIds')
    invitees.forEach((id) => this.contactMock(id))
    this.contactMock(inviterId)
    room.payload.memberIdList = unique([...room.payload.memberIdList, ...invitees])
    this.puppet.emit('room-join', { roomId, inviteeIdList: invitees, inviterId, timestamp: Date.now() })
  }

  /** Removes contacts from a room and emits `room-leave`. */
  roomLeave(roomId: string, leaverIds: string[], removerId: string): void {
    const room = this.roomMock(roomId)
    const leavers = requireIds(leaverIds, 'leaverIds')
    this.contactMock(removerId)
    room.payload.memberIdList = room.payload.memberIdList.filter((id) => !leavers.includes(id))
    this.puppet.emit('room-leave', { roomId, removeeIdList: leavers, removerId, timestamp: Date.now() })
  }

  /** Changes a room's topic and emits `room-topic`. */
  roomTopic(roomId: string, newTopic: string, changerId: string): void {
    const room = this.roomMock(roomId)
    this.contactMock(changerId)
    const oldTopic = room.payload.topic
    room.payload.topic = String(newTopic)
    this.puppet.emit('room-topic', { roomId, newTopic: String(newTopic), oldTopic, changerId, timestamp: Date.now() })
  }

  /**
   * The mock ignores alias and topic changes, so Wechaty reads the old value back (and warns
   * that the change did not sync). Apply them to the mock's payloads, as WeChat would.
   */
  private applyIgnoredSetter(method: string, args: unknown[]): void {
    const [id, value] = args
    if (typeof id !== 'string') return
    try {
      if (method === 'contactAlias' && (typeof value === 'string' || value === null)) {
        this.mocker.ContactMock.load(id).payload.alias = value ?? ''
      } else if (method === 'roomTopic' && typeof value === 'string') {
        this.mocker.RoomMock.load(id).payload.topic = value
      }
    } catch {
      // unknown id: leave it to the puppet method to complain
    }
  }

  private contactMock(id: string): ContactMock {
    requireString(id, 'contact id')
    try {
      return this.mocker.ContactMock.load(id)
    } catch {
      throw new Error(`unknown contact id ${JSON.stringify(id)}: create it first with mock.contact(name)`)
    }
  }

  private roomMock(id: string): RoomMock {
    requireString(id, 'room id')
    try {
      return this.mocker.RoomMock.load(id)
    } catch {
      throw new Error(`unknown room id ${JSON.stringify(id)}: create it first with mock.room(topic, memberIds)`)
    }
  }

  private conversation(id: string): ContactMock | RoomMock {
    return /@/.test(id) ? this.roomMock(id) : this.contactMock(id)
  }

  private patchPuppet(): void {
    const puppet = this.puppet
    const friendshipRawPayload = puppet.friendshipRawPayload.bind(puppet)
    puppet.friendshipRawPayload = async (id: string) => this.friendships.get(id) ?? friendshipRawPayload(id)

    const friendshipAccept = puppet.friendshipAccept.bind(puppet)
    puppet.friendshipAccept = async (id: string) => {
      const request = this.friendships.get(id)
      if (request !== undefined) {
        this.acceptedFriendships.add(id)
        // Same object as the mock's cached payload: the contact is a friend from now on.
        this.mocker.ContactMock.load(request.contactId).payload.friend = true
        await puppet.contactPayloadDirty(request.contactId)
      }
      return friendshipAccept(id)
    }

    const roomInvitationRawPayload = puppet.roomInvitationRawPayload.bind(puppet)
    puppet.roomInvitationRawPayload = async (id: string) =>
      this.invitations.get(id) ?? roomInvitationRawPayload(id)

    const roomInvitationAccept = puppet.roomInvitationAccept.bind(puppet)
    puppet.roomInvitationAccept = async (id: string) => {
      if (this.invitations.has(id)) this.acceptedInvitations.add(id)
      return roomInvitationAccept(id)
    }

    const methods = puppet as unknown as Record<string, (...args: unknown[]) => unknown>
    for (const [method, worthRecording] of Object.entries(RECORDED_METHODS)) {
      const original = methods[method]
      if (typeof original !== 'function') continue
      const bound = original.bind(puppet)
      methods[method] = (...args: unknown[]) => {
        if (worthRecording(args)) {
          this.calls.push({ method, args })
          this.applyIgnoredSetter(method, args)
        }
        return bound(...args)
      }
    }
  }
}

function toSayable(content: SayContent): string | FileBox {
  if (typeof content === 'object' && content !== null) {
    if ('text' in content && typeof content.text === 'string') return content.text
    if ('file' in content && typeof content.file === 'object' && content.file !== null) {
      const { name, base64 } = content.file
      if (typeof name === 'string' && name !== '' && typeof base64 === 'string') {
        // FileBox.fromBuffer cannot be sent through the mock; base64 can.
        return FileBox.fromBase64(base64, name)
      }
    }
  }
  throw new Error('content must be {text: string} or {file: {name: string, base64: string}}')
}

function fileMessageType(box: FileBox): types.Message {
  const mime = box.mediaType || ''
  const ext = box.name.toLowerCase().split('.').pop() ?? ''
  if (mime.startsWith('image/')) return types.Message.Image
  if (mime.startsWith('video/')) return types.Message.Video
  if (mime.startsWith('audio/') || ext === 'silk' || ext === 'sil') return types.Message.Audio
  return types.Message.Attachment
}

function requireString(value: unknown, what: string): asserts value is string {
  if (typeof value !== 'string' || value === '') throw new Error(`${what} must be a non-empty string`)
}

function requireIds(value: unknown, what: string): string[] {
  if (!Array.isArray(value) || !value.every((id) => typeof id === 'string' && id !== '')) {
    throw new Error(`${what} must be an array of ids`)
  }
  return value as string[]
}

function unique(ids: string[]): string[] {
  return [...new Set(ids)]
}
