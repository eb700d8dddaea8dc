/**
 * Wire protocol between this Node client and the MetaPuppet Python server.
 *
 * Mirror of `MetaPuppet/protocol.py`: change both files together and bump
 * PROTOCOL_VERSION when a change is not backwards compatible.
 *
 * The handshake (protocol 2; `MetaPuppet/protocol.py` explains it at length): the client
 * connects with `auth = {protocol, role, bot, capabilities, replace?, nonce, key}` (a fresh
 * nonce, and `keyId` of its token: the token itself never travels); the server answers
 * `challenge {nonce, proof}` right after the connect; the client checks `serverProof` before
 * it sends or runs anything, then sends `authenticate {proof}` (`clientProof`) and waits for
 * `{ok: true}`. Both proofs cover both nonces, the role and the bot.
 *
 * Delivery (protocol 3): the reply to an event travels in the event's ack as typed actions
 * (`{ok: true, actions: [SayAction, ...]}`); every other send is an `act` request. Each send
 * carries a `send_id` (`<event id>#<n>` inside a handling): this client records every completed
 * one durably and answers a repeated id from the record, never sending twice. The authenticate
 * ack says whether the server wants the bot's own messages (`self_messages`); a `control`
 * `{action: "self-messages", on}` says when that changes.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto'

export const PROTOCOL_VERSION = 3

/** Socket.IO event names. */
export const WIRE = {
  /** Node → Python: one Wechaty event in an envelope, acknowledged by the server. */
  event: 'event',
  /** Python → Node: run a snippet against the live bot, answered through the ack. */
  exec: 'exec',
  /** Python → Node: returns its argument untouched (raw round-trip baseline for benchmarks). */
  echo: 'echo',
  /** Python → Node: `{action}` (see CONTROL_ACTIONS), answered `{ok: true}` or `{ok: false, error}`. */
  control: 'control',
  /** Python → Node: one typed action (`say`, `typing`) with `timeout_ms`, answered like `exec`. */
  act: 'act',
  /** Python → Node, right after the connect: `{nonce, proof}`, the server's half of the handshake. */
  challenge: 'challenge',
  /** Node → Python: `{proof}`, answered `{ok: true, ...}` or `{ok: false, error}` (then the server closes). */
  authenticate: 'authenticate',
} as const

/**
 * Actions of the `control` event. `restart-bot`: stop the Wechaty bot and start it again.
 * `self-messages` (`{on: boolean}`): forward the bot's own messages, or not.
 */
export const CONTROL_ACTIONS = ['restart-bot', 'self-messages'] as const
export type ControlAction = (typeof CONTROL_ACTIONS)[number]

export interface ControlRequest {
  action: ControlAction
  on?: boolean
}

export type ControlResponse = { ok: true } | { ok: false; error: WireError }

/**
 * Error kinds in an `event` ack after which the event is dropped (never re-sent). Any other
 * kind (`unavailable`: the server is shutting down, or one this client does not know) keeps
 * the event for re-sending after the next reconnect.
 */
export const EVENT_ACK_DROP_KINDS: readonly string[] = ['bad_request', 'forbidden']

export type Role = 'puppet' | 'web'

/** The server refuses longer bot names and event ids. */
export const MAX_BOT_NAME_LENGTH = 64
export const MAX_ID_LENGTH = 256

/** Sent in the Socket.IO `auth` payload when connecting (never the token itself). */
export interface AuthPayload {
  protocol: number
  role: Role
  /** 64 hex digits of fresh randomness, new for every connection attempt. */
  nonce: string
  /** `keyId(token, nonce)`: which token this client holds, without revealing it. */
  key: string
  bot?: string
  /** What the bot's channel can do (puppet role). */
  capabilities?: Capabilities
  /** Take over a bot that is connected already (client.replace_existing: a deliberate hand-over). */
  replace?: boolean
}

/** What both proofs of the handshake cover. */
export interface Handshake {
  role: Role
  bot: string | null
  clientNonce: string
  serverNonce: string
  replace: boolean
}

/** The server's `challenge`. */
export interface Challenge {
  nonce: string
  proof: string
}

/**
 * The server's answer to `authenticate`; `error.kind` is `bot_taken` when another client has the
 * bot. `self_messages` (puppets): whether to forward the bot's own messages.
 */
export type AuthAck =
  | { ok: true; role: Role; bot: string | null; permissions?: string[]; self_messages?: boolean }
  | { ok: false; error: { kind?: string; name?: string; message?: string } }

const HANDSHAKE_CONTEXT = `MetaPuppet protocol ${PROTOCOL_VERSION}`
const HEX_64 = /^[0-9a-f]{64}$/

function mac(token: string, label: string, ...parts: string[]): string {
  return createHmac('sha256', Buffer.from(token, 'utf8'))
    .update([HANDSHAKE_CONTEXT, label, ...parts].join('\n'), 'utf8')
    .digest('hex')
}

function transcript(h: Handshake): string[] {
  return [h.role, h.bot ?? '', h.clientNonce, h.serverNonce, h.replace ? 'replace' : '']
}

/** 32 bytes of fresh randomness as hex: one per connection and side. */
export function newNonce(): string {
  return randomBytes(32).toString('hex')
}

export function keyId(token: string, clientNonce: string): string {
  return mac(token, 'key', clientNonce)
}

export function serverProof(token: string, handshake: Handshake): string {
  return mac(token, 'server', ...transcript(handshake))
}

export function clientProof(token: string, handshake: Handshake): string {
  return mac(token, 'client', ...transcript(handshake))
}

/** Constant-time comparison of a proof (or key) with the expected one. */
export function proofMatches(expected: string, given: unknown): boolean {
  if (typeof given !== 'string' || !HEX_64.test(given) || !HEX_64.test(expected)) return false
  return timingSafeEqual(Buffer.from(expected, 'hex'), Buffer.from(given, 'hex'))
}

/** The `challenge` payload, or null when it is not one. */
export function parseChallenge(data: unknown): Challenge | null {
  if (typeof data !== 'object' || data === null) return null
  const { nonce, proof } = data as { nonce?: unknown; proof?: unknown }
  if (typeof nonce !== 'string' || !HEX_64.test(nonce) || typeof proof !== 'string' || !HEX_64.test(proof)) return null
  return { nonce, proof }
}

/** A fresh connect payload for `token` (a new nonce on every call). */
export function authPayload(
  token: string,
  role: Role,
  options: { bot?: string; capabilities?: Capabilities; replace?: boolean } = {},
): AuthPayload {
  const nonce = newNonce()
  const payload: AuthPayload = { protocol: PROTOCOL_VERSION, role, nonce, key: keyId(token, nonce) }
  if (options.bot !== undefined) payload.bot = options.bot
  if (options.capabilities !== undefined) payload.capabilities = options.capabilities
  if (options.replace === true) payload.replace = true
  return payload
}

/** The send rule of a channel with a budget (iLink): the Python side enforces it. */
export interface SendBudget extends JsonObject {
  /** The user must write before the bot may send. */
  user_first: boolean
  /** Bot messages allowed per user message. */
  per_user_message: number
  /** Seconds after a user message during which the bot may answer it. */
  window_s: number
}

/**
 * What a bot's channel can do, reported at connect (auth `capabilities`) and in every `login`
 * event payload (`capabilities`). The Python side refuses an unsupported call at once.
 */
export interface Capabilities extends JsonObject {
  /** The puppet: "mock", "ilink", or the puppet package name. */
  channel: string
  rooms: boolean
  friendships: boolean
  contact_list: boolean
  files: boolean
  recall: boolean
  typing: boolean
  url_links: boolean
  mini_programs: boolean
  contact_cards: boolean
  alias: boolean
  send_budget: SendBudget | null
}

/** Every Wechaty event this client forwards. */
export const EVENT_NAMES = [
  'message',
  'friendship',
  'room-invite',
  'room-join',
  'room-leave',
  'room-topic',
  'login',
  'logout',
  'scan',
  'ready',
  'error',
  'heartbeat',
] as const
export type EventName = (typeof EVENT_NAMES)[number]

export type Json = null | boolean | number | string | Json[] | { [key: string]: Json }
export type JsonObject = { [key: string]: Json }

/**
 * Node → Python `event` payload. The server drops duplicates by `id`: it is unique per event,
 * and for a `message` it is derived from the Wechaty message id (`msg:<id>`), so a message the
 * puppet delivers again is recognised as a duplicate.
 */
export interface EventEnvelope<P extends JsonObject = JsonObject> {
  id: string
  bot: string
  name: EventName
  payload: P
  /** Milliseconds since the epoch, taken when the Wechaty event fired. */
  ts: number
  /**
   * Set by the bridge on the wire: 1 the first time the event is sent (no server can have
   * seen it), 2 or more when it is sent again (after a reconnect, or loaded from the outbox
   * file). Absent from older clients, which the server treats as "maybe sent before".
   */
  attempt?: number
}

export type ErrorKind = 'bad_request' | 'compile' | 'runtime' | 'timeout' | 'serialize'

export interface WireError {
  kind: ErrorKind
  name: string
  message: string
  stack: string | null
  /** The thrown error's own `code` (e.g. ilink's -2 / -14), only when it had a number or string one. */
  code?: number | string
}

/**
 * The server's acknowledgement of an `event`; `error.kind` may be a server kind such as
 * `forbidden` or `unavailable`. `actions`: the reply, to run once the ack is recorded.
 */
export type EventAck =
  | { ok: true; actions?: TypedAction[] }
  | { ok: false; error: { kind?: string; name?: string; message?: string } }

/** What a `say` sends: the `sayable` of the Python side (`sayable_to_wire`). */
export type Sayable =
  | { type: 'text'; text: string }
  | { type: 'file'; name: string; base64: string }
  | { type: 'file_url'; url: string; name?: string | null }
  | { type: 'url'; payload: JsonObject }
  | { type: 'mini_program'; payload: JsonObject }
  | { type: 'contact'; id: string }

/** A typed `say`: the fields the `SAY` snippet took as `args`, plus its send id. */
export interface SayAction {
  action: 'say'
  send_id: string
  to: string
  kind: 'room' | 'contact'
  sayable: Sayable
  mentions: string[]
  /** The message this answers (channels with send windows: its context). */
  replyTo?: string | null
}

/** "typing..." on or off in a chat (ilink's `metapuppetTyping`; false where there is none). */
export interface TypingAction {
  action: 'typing'
  to: string
  on: boolean
}

export type TypedAction = SayAction | TypingAction

/** An event id, `#` and the send's position in its handling. */
export const MAX_SEND_ID_LENGTH = MAX_ID_LENGTH + 12
const SAYABLE_TYPES = ['text', 'file', 'file_url', 'url', 'mini_program', 'contact']

/** The typed action in `data`, or a message naming what is wrong with it. */
export function parseAction(data: unknown): TypedAction | string {
  if (typeof data !== 'object' || data === null || Array.isArray(data)) return 'an action must be an object {action, ...}'
  const a = data as Record<string, unknown>
  if (typeof a.to !== 'string' || a.to === '' || a.to.length > MAX_ID_LENGTH) return `'to' must be an id of at most ${MAX_ID_LENGTH} characters`
  if (a.action === 'typing') {
    if (typeof a.on !== 'boolean') return "'on' must be true or false"
    return { action: 'typing', to: a.to, on: a.on }
  }
  if (a.action !== 'say') return `unknown action ${JSON.stringify(String(a.action).slice(0, 40))}: use say or typing`
  if (typeof a.send_id !== 'string' || a.send_id === '' || a.send_id.length > MAX_SEND_ID_LENGTH) {
    return `'send_id' must be a string of at most ${MAX_SEND_ID_LENGTH} characters`
  }
  if (a.kind !== 'room' && a.kind !== 'contact') return "'kind' must be room or contact"
  const sayable = a.sayable as { type?: unknown } | null
  if (typeof sayable !== 'object' || sayable === null || !SAYABLE_TYPES.includes(String(sayable.type))) {
    return `'sayable' must be an object with a type of ${SAYABLE_TYPES.join(', ')}`
  }
  const mentions = a.mentions ?? []
  if (!Array.isArray(mentions) || !mentions.every((m) => typeof m === 'string')) return "'mentions' must be a list of ids"
  const replyTo = a.replyTo
  if (replyTo !== undefined && replyTo !== null && typeof replyTo !== 'string') return "'replyTo' must be a message id or null"
  const action: SayAction = { action: 'say', send_id: a.send_id, to: a.to, kind: a.kind, sayable: sayable as Sayable, mentions: mentions as string[] }
  if (replyTo !== undefined) action.replyTo = replyTo as string | null
  return action
}

/** Python → Node `exec` request. `code` is the body of an async function; data travels in `args`. */
export interface ExecRequest {
  code: string
  args?: unknown
  timeout_ms?: number
}

export type ExecResponse = { ok: true; result: Json } | { ok: false; error: WireError }

export const DEFAULT_EXEC_TIMEOUT_MS = 30_000
export const MAX_EXEC_TIMEOUT_MS = 24 * 60 * 60 * 1000

/* ---------------------------------------------------------------- event payloads */

export interface ContactRef extends JsonObject {
  id: string
  name: string
}

export interface RoomRef extends JsonObject {
  id: string
  topic: string
}

/**
 * `message`: the puppet message payload (id, type, text, talkerId, listenerId, roomId,
 * timestamp, mentionIdList, filename, ...) plus the fields below.
 */
export interface MessageEventPayload extends JsonObject {
  id: string
  type: number
  /** Name of `type` in wechaty's `types.Message` enum, e.g. "Text", "Attachment". */
  typeName: string
  text: string
  talkerId: string
  listenerId: string | null
  roomId: string | null
  timestamp: number
  mentionIdList: string[]
  fromId: string
  toId: string | null
  self: boolean
  mentionSelf: boolean
  talker: ContactRef
  room: RoomRef | null
}

export interface FriendshipEventPayload extends JsonObject {
  id: string
  type: number
  typeName: string
  contactId: string
  hello: string
  timestamp: number | null
  contact: ContactRef
}

export interface RoomInviteEventPayload extends JsonObject {
  id: string
  inviterId: string | null
  topic: string | null
  memberCount: number | null
  memberIdList: string[]
  receiverId: string | null
  timestamp: number | null
}

export interface RoomJoinEventPayload extends JsonObject {
  roomId: string
  topic: string
  inviteeIdList: string[]
  inviterId: string
  timestamp: number
}

export interface RoomLeaveEventPayload extends JsonObject {
  roomId: string
  topic: string
  leaverIdList: string[]
  removerId: string | null
  timestamp: number
}

export interface RoomTopicEventPayload extends JsonObject {
  roomId: string
  topic: string
  oldTopic: string
  changerId: string
  timestamp: number
}

export interface LoginEventPayload extends JsonObject {
  id: string
  name: string
  /** What the channel can do; null only when the client was built without capabilities. */
  capabilities: Capabilities | null
}

export interface LogoutEventPayload extends JsonObject {
  id: string
  name: string
  reason: string | null
}

export interface ScanEventPayload extends JsonObject {
  qrcode: string
  status: number
  statusName: string
  /** The puppet's own word for the state, when it gives one (ilink: "wait", "scaned", "need_verifycode", ...). */
  data: string | null
}

export interface ErrorEventPayload extends JsonObject {
  name: string
  message: string
  stack: string | null
}

/** Liveness of the Wechaty bot, in the client's own heartbeat. */
export interface WechatyLiveness extends JsonObject {
  logged_in: boolean
  /** False when the latest ding probe got no dong within client.stall_probe_timeout_ms (or ding threw). */
  alive: boolean
  /** Round trip of the latest completed probe; null before the first one or when it failed. */
  ding_ms: number | null
}

/**
 * Whether the puppet got through to its channel, in the client's own heartbeat (`puppet`) and in
 * the one `error` event sent when it cannot (supervisor.ts). `starting`: started, not through
 * yet (no scan, no login); `running`: it got a scan or a login; `retrying`: it failed and is
 * started again in `retry_in_s` seconds; `stopped`: the client is shutting down.
 */
export interface PuppetHealth extends JsonObject {
  state: 'starting' | 'running' | 'retrying' | 'stopped'
  /** e.g. "cannot reach WeChat: getaddrinfo ENOTFOUND login.wx.qq.com; retrying in 8 s"; null when running. */
  message: string | null
  retry_in_s: number | null
  /** Failed starts in a row (0 once it got through). */
  attempts: number
}

/** The client's outbox, in its own heartbeat: events not yet acknowledged by the server (Python's /metrics). */
export interface OutboxDepth extends JsonObject {
  pending: number
  bytes: number
}

/** Wechaty heartbeats carry `{data}`; the client's own carry `{source: "client", uptime_s, wechaty, puppet, outbox}`. */
export type HeartbeatEventPayload =
  | { data: Json }
  | { source: 'client'; uptime_s: number; wechaty: WechatyLiveness; puppet: PuppetHealth; outbox: OutboxDepth }
