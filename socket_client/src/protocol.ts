/**
 * Wire protocol between this Node client and the MetaPuppet Python server.
 *
 * Mirror of `MetaPuppet/protocol.py`: change both files together and bump
 * PROTOCOL_VERSION when a change is not backwards compatible.
 */

export const PROTOCOL_VERSION = 1

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
} as const

/** Actions of the `control` event. `restart-bot`: stop the Wechaty bot and start it again. */
export const CONTROL_ACTIONS = ['restart-bot'] as const
export type ControlAction = (typeof CONTROL_ACTIONS)[number]

export interface ControlRequest {
  action: ControlAction
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

/** Sent in the Socket.IO `auth` payload when connecting. */
export interface AuthPayload {
  token: string
  role: Role
  protocol: number
  bot?: string
  /** What the bot's channel can do (puppet role). */
  capabilities?: Capabilities
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

/** The server's acknowledgement of an `event`; `error.kind` may be a server kind such as `forbidden` or `unavailable`. */
export type EventAck = { ok: true } | { ok: false; error: { kind?: string; name?: string; message?: string } }

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
