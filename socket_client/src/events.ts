/**
 * Turns Wechaty events into plain-JSON envelopes `{id, bot, name, payload, ts}`.
 *
 * Payloads hold ids and puppet payloads, never live objects. Conversions run one after the
 * other so envelopes leave in the order Wechaty emitted the events; every lookup is best
 * effort (a failed lookup yields a null field, never a lost event).
 *
 * Envelope ids are random UUIDs, except for `message`: `msg:<Wechaty message id>`, so the
 * same WeChat message delivered twice (a puppet re-reading after a crash) is a duplicate the
 * server drops. A puppet with `metapuppetDelivered(id)` is told when a message's envelope was
 * handed on (the ilink puppet moves its cursor only then).
 */
import { createHash, randomUUID } from 'node:crypto'
import qrcodeTerminal from 'qrcode-terminal'
import { types, type Wechaty } from 'wechaty'
import type { Contact, ContactSelf, Friendship, Message, Room, RoomInvitation } from 'wechaty/users'
import type { Logger } from './log.js'
import {
  MAX_ID_LENGTH,
  type Capabilities,
  type ContactRef,
  type ErrorEventPayload,
  type EventEnvelope,
  type EventName,
  type FriendshipEventPayload,
  type Json,
  type JsonObject,
  type LoginEventPayload,
  type LogoutEventPayload,
  type MessageEventPayload,
  type RoomInviteEventPayload,
  type RoomJoinEventPayload,
  type RoomLeaveEventPayload,
  type RoomTopicEventPayload,
  type ScanEventPayload,
} from './protocol.js'
import { toWire, wellFormedDeep } from './serialize.js'

export interface AttachEventsOptions {
  bot: Wechaty
  /** The bot name put in every envelope (config client.bot). */
  botName: string
  log: Logger
  /** Mock puppet: the QR code is not printed and known spurious mock errors are only logged. */
  isMock: boolean
  /**
   * Receives each envelope, in order. A promise it returns settles once the envelope is in the
   * outbox file: the puppet is told the message was handed on only then (the ilink puppet moves
   * its cursor then).
   */
  emit: (envelope: EventEnvelope) => void | Promise<void>
  /** Whether to forward the bot's own messages (the server says; default: always). */
  forwardSelf?: () => boolean
  /** How long one lookup (a name, a topic, ...) may take before it is given up. */
  lookupTimeoutMs?: number
  /** What the channel can do; added to every `login` payload (null when not given). */
  capabilities?: Capabilities | null
  /**
   * Takes over logging and forwarding `error` events (main.ts: redaction, the puppet supervisor,
   * repeat suppression); `send` forwards one payload in order with the other events.
   */
  onError?: (payload: ErrorEventPayload, send: (payload: ErrorEventPayload) => void) => void
}

/** A puppet that wants to know when a message's event was handed on (the ilink puppet). */
interface DeliveryAwarePuppet {
  metapuppetDelivered?: (messageId: string) => void
}

/** Envelope id of a `message` event: stable for the same Wechaty message id. */
export function messageEventId(messageId: string): string {
  const id = `msg:${messageId}`
  if (messageId !== '' && id.length <= MAX_ID_LENGTH) return id
  return `msg:h${createHash('sha256').update(messageId).digest('hex')}`
}

/** Attaches a listener for every forwarded Wechaty event; returns a function detaching them. */
export function attachEvents(options: AttachEventsOptions): () => void {
  const { bot, botName, log, isMock, emit, forwardSelf } = options
  const lookupMs = options.lookupTimeoutMs ?? 5_000
  const capabilities = options.capabilities ?? null
  /** Tells the puppet the message's envelope was handed on, if it wants to know (bot.puppet exists only after start). */
  const delivered = (messageId: string): void => {
    let puppet: DeliveryAwarePuppet
    try {
      puppet = bot.puppet as unknown as DeliveryAwarePuppet
    } catch {
      return
    }
    if (typeof puppet.metapuppetDelivered === 'function') puppet.metapuppetDelivered(messageId)
  }
  let chain: Promise<void> = Promise.resolve()

  /** Queues one event: stamps it now, converts it in order, then emits it (`after`: once written). */
  const forward = (name: EventName, build: () => Promise<JsonObject> | JsonObject, id: string = randomUUID(), after?: () => void): void => {
    const ts = Date.now()
    chain = chain
      .then(build)
      // Text from the puppet is made valid here: a lone UTF-16 surrogate (a cut emoji) becomes U+FFFD.
      .then(
        (payload) => {
          const written = emit({ id, bot: botName, name, payload: wellFormedDeep(payload), ts })
          if (after === undefined) return
          if (written instanceof Promise) void written.then(after, after)
          else after()
        },
        (e: unknown) => {
          log.warn('could not forward %s event: %s', name, errorText(e))
          after?.()
        },
      )
  }

  const lookup = <T>(what: Promise<T> | (() => T), fallback: T): Promise<T> => settle(what, fallback, lookupMs)

  const contactRef = async (contact: Contact | undefined): Promise<ContactRef> => ({
    id: contact?.id ?? '',
    name: await lookup(() => contact?.name() ?? '', ''),
  })

  const roomTopic = (room: Room): Promise<string> => lookup(room.topic(), '')
  const sendError = (payload: ErrorEventPayload): void => forward('error', () => payload)

  const listeners = {
    message: (message: Message) => {
      // The bot's own messages (the mock echoes every send) only when the server wants them:
      // nothing is built, stored or sent for them otherwise.
      if (forwardSelf !== undefined && !forwardSelf() && isSelf(message)) return
      forward(
        'message',
        () => messagePayload(message, lookup, contactRef),
        messageEventId(message.id),
        () => delivered(message.id),
      )
    },

    friendship: (friendship: Friendship) =>
      forward('friendship', async (): Promise<FriendshipEventPayload> => {
        const p = (friendship.payload ?? {}) as Partial<Record<string, unknown>>
        const type = typeof p.type === 'number' ? p.type : friendship.type()
        const contact = await lookup(() => friendship.contact(), undefined)
        return {
          id: friendship.id,
          type,
          typeName: types.Friendship[type] ?? 'Unknown',
          contactId: typeof p.contactId === 'string' ? p.contactId : contact?.id ?? '',
          hello: typeof p.hello === 'string' ? p.hello : '',
          timestamp: typeof p.timestamp === 'number' ? p.timestamp : null,
          contact: await contactRef(contact),
        }
      }),

    'room-invite': (invitation: RoomInvitation) =>
      forward('room-invite', async (): Promise<RoomInviteEventPayload> => {
        const p = await lookup(bot.puppet.roomInvitationPayload(invitation.id), undefined)
        return {
          id: invitation.id,
          inviterId: p?.inviterId ?? null,
          topic: p?.topic ?? null,
          memberCount: typeof p?.memberCount === 'number' ? p.memberCount : null,
          memberIdList: Array.isArray(p?.memberIdList) ? p.memberIdList : [],
          receiverId: p?.receiverId ?? null,
          timestamp: typeof p?.timestamp === 'number' ? p.timestamp : null,
        }
      }),

    'room-join': (room: Room, invitees: Contact[], inviter: Contact, date?: Date) =>
      forward('room-join', async (): Promise<RoomJoinEventPayload> => ({
        roomId: room.id,
        topic: await roomTopic(room),
        inviteeIdList: invitees.map((c) => c.id),
        inviterId: inviter.id,
        timestamp: date?.getTime() ?? Date.now(),
      })),

    'room-leave': (room: Room, leavers: Contact[], remover?: Contact, date?: Date) =>
      forward('room-leave', async (): Promise<RoomLeaveEventPayload> => ({
        roomId: room.id,
        topic: await roomTopic(room),
        leaverIdList: leavers.map((c) => c.id),
        removerId: remover?.id ?? null,
        timestamp: date?.getTime() ?? Date.now(),
      })),

    'room-topic': (room: Room, topic: string, oldTopic: string, changer: Contact, date?: Date) =>
      forward('room-topic', (): RoomTopicEventPayload => ({
        roomId: room.id,
        topic,
        oldTopic,
        changerId: changer.id,
        timestamp: date?.getTime() ?? Date.now(),
      })),

    login: (user: ContactSelf) =>
      forward('login', async (): Promise<LoginEventPayload> => ({ ...(await contactRef(user)), capabilities })),

    logout: (user: ContactSelf, reason?: string) =>
      forward('logout', async (): Promise<LogoutEventPayload> => ({
        ...(await contactRef(user)),
        reason: reason ?? null,
      })),

    scan: (qrcode: string, status: types.ScanStatus, data?: string) => {
      const statusName = types.ScanStatus[status] ?? 'Unknown'
      if (isMock) {
        log.info('scan event from the mock puppet (status %s): nothing to scan', statusName)
      } else if (qrcode !== '' && (status === types.ScanStatus.Waiting || status === types.ScanStatus.Timeout)) {
        log.info('scan this QR code with WeChat to log in (status %s):', statusName)
        qrcodeTerminal.generate(qrcode, { small: true })
      } else {
        log.info('scan status: %s', statusName)
      }
      forward('scan', (): ScanEventPayload => ({ qrcode, status, statusName, data: typeof data === 'string' && data !== '' ? data : null }))
    },

    ready: () => forward('ready', () => ({})),

    error: (error: Error) => {
      const payload: ErrorEventPayload = {
        name: error?.name ?? 'Error',
        message: error?.message ?? String(error),
        stack: error?.stack ?? null,
      }
      if (isMock && isSpuriousMockError(payload.message)) {
        log.debug('ignored mock puppet error: %s', payload.message)
        return
      }
      if (options.onError !== undefined) {
        options.onError(payload, sendError)
        return
      }
      log.warn('wechaty error: %s', payload.message)
      forward('error', () => payload)
    },

    heartbeat: (data: unknown) =>
      forward('heartbeat', async (): Promise<JsonObject> => ({ data: await toWire(data) })),
  }

  for (const [name, listener] of Object.entries(listeners)) {
    bot.on(name as 'message', listener as (m: Message) => void)
  }
  return () => {
    for (const [name, listener] of Object.entries(listeners)) {
      bot.off(name as 'message', listener as (m: Message) => void)
    }
  }
}

/**
 * Errors the mock puppet raises on its own during room-join/leave/topic: Wechaty treats the
 * RoomMember "dirty" notice for a room id as a contact id and cannot find that contact.
 */
export function isSpuriousMockError(message: string): boolean {
  return /^no payload found for id \S*@\S*$/.test(message)
}

type Lookup = <T>(what: Promise<T> | (() => T), fallback: T) => Promise<T>

async function messagePayload(
  message: Message,
  lookup: Lookup,
  contactRef: (c: Contact | undefined) => Promise<ContactRef>,
): Promise<MessageEventPayload> {
  const raw = (message.payload ?? { id: message.id }) as unknown as Record<string, unknown>
  // No size cap here: the bridge measures the envelope in bytes against the server's limit
  // and moves one that is too large to the dead letters, with an error event naming it.
  const base = (await toWire(raw, Number.MAX_SAFE_INTEGER)) as JsonObject
  const talker = await lookup(() => message.talker(), undefined)
  const room = await lookup(() => message.room(), undefined)
  const type = typeof raw.type === 'number' ? raw.type : types.Message.Unknown
  const talkerId = typeof raw.talkerId === 'string' ? raw.talkerId : talker?.id ?? ''
  const listenerId = typeof raw.listenerId === 'string' && raw.listenerId !== '' ? raw.listenerId : null
  const roomId = typeof raw.roomId === 'string' && raw.roomId !== '' ? raw.roomId : null
  return {
    ...base,
    id: message.id,
    type,
    typeName: types.Message[type] ?? 'Unknown',
    text: typeof raw.text === 'string' ? raw.text : '',
    talkerId,
    listenerId,
    roomId,
    timestamp: typeof raw.timestamp === 'number' ? raw.timestamp : Date.now(),
    mentionIdList: Array.isArray(raw.mentionIdList) ? (base.mentionIdList as Json[]).filter(isString) : [],
    fromId: talkerId,
    toId: listenerId,
    self: await lookup(() => message.self(), false),
    mentionSelf: await lookup(message.mentionSelf(), false),
    talker: await contactRef(talker),
    room: room === undefined ? null : { id: room.id, topic: await lookup(room.topic(), '') },
  }
}

function isSelf(message: Message): boolean {
  try {
    return message.self()
  } catch {
    return false
  }
}

function isString(value: Json): value is string {
  return typeof value === 'string'
}

/** Resolves to `what`'s value, or `fallback` if it throws, rejects or takes longer than `ms`. */
function settle<T>(what: Promise<T> | (() => T), fallback: T, ms: number): Promise<T> {
  let promise: Promise<T>
  try {
    promise = typeof what === 'function' ? Promise.resolve((what as () => T)()) : what
  } catch {
    return Promise.resolve(fallback)
  }
  return new Promise<T>((resolve) => {
    const timer = setTimeout(() => resolve(fallback), ms)
    promise.then(
      (value) => {
        clearTimeout(timer)
        resolve(value)
      },
      () => {
        clearTimeout(timer)
        resolve(fallback)
      },
    )
  })
}

function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e)
}
