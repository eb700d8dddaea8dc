/**
 * The Socket.IO link to the MetaPuppet server.
 *
 * - Authenticates as a puppet with the mutual handshake (see protocol.ts): the connect carries
 *   a fresh nonce and a key derived from the token, never the token; the server must answer
 *   with a valid `challenge` proof before this client sends any event or answers any exec,
 *   echo or control. A server that cannot prove it holds the token is left at once, with an
 *   error line, and tried again later (the real one may be restarting). Only after the
 *   server accepted our `authenticate` proof does the link count as connected.
 * - A bot name another client holds is refused by the server (`bot_taken`): logged, retried
 *   with backoff (it takes over once the other one leaves); `replaceExisting` asks the server to
 *   hand the bot over to this client instead.
 * - Forwards event envelopes through the Outbox: an event stays in it until the server
 *   acknowledges it (`{ok: true}`) or rejects it for good (`bad_request`, `forbidden`). On every
 *   (re)connect the pending events are sent first, in order, then new ones as they come.
 *   An event is sent at most once per connection: one whose ack says `unavailable` (or an
 *   unknown kind), or that stays unacknowledged past `ackTimeoutMs`, waits for the next
 *   reconnect (the server drops duplicates by id). Sending never waits for acks.
 *   Events are only emitted while connected, so Socket.IO's own send buffer never holds a copy.
 * - Several server URLs (`urls`, a cluster of server processes): each retry goes to the next one,
 *   with the same backoff, so a client whose server died reconnects to another.
 * - Reconnects by hand, for as long as it runs, with `reconnectDelay` (exponential, capped,
 *   jittered); Socket.IO's own reconnection is off (its backoff degrades to 0 ms after ~1000
 *   attempts, and it does not retry after a refusal or a server-side disconnect anyway).
 * - Poison events: an event whose frame would be over the server's limit (`WireLimit`, learned
 *   from the Engine.IO handshake) would close the connection every time it is re-sent, and block
 *   every event behind it. It goes to the dead letters file instead, with an `error` event
 *   (`EventTooLarge`) naming it; so does one larger than the whole outbox.
 * - Client heartbeats are sent only while connected and never stored.
 * - Answers `exec` (run a snippet), `act` (a typed action: say, typing), `echo` (raw round trip)
 *   and `control` through their acks.
 * - Protocol 3: an event's ack may carry the reply as typed actions. The outbox records the event
 *   as acknowledged and its actions as pending in one line; once that is written the actions run
 *   (`ActionRunner`). An event is sent only once its line is written (group commit), so whatever
 *   the server acknowledged is on disk here.
 */
import { io, type ManagerOptions, type Socket, type SocketOptions } from 'socket.io-client'
import { randomUUID } from 'node:crypto'
import { reconnectDelay } from './backoff.js'
import type { DeadLetterReason, DeadLetters } from './deadletters.js'
import { fromThrown } from './executor.js'
import type { Logger } from './log.js'
import { Outbox, type OutboxEntry } from './outbox.js'
import {
  EVENT_ACK_DROP_KINDS,
  WIRE,
  authPayload,
  clientProof,
  parseChallenge,
  proofMatches,
  serverProof,
  type AuthAck,
  type Capabilities,
  type ControlResponse,
  type EventEnvelope,
  type ExecResponse,
  type JsonObject,
  type TypedAction,
  parseAction,
} from './protocol.js'
import { FRAME_OVERHEAD_BYTES as FRAME_OVERHEAD, WireLimit } from './wirelimit.js'

export interface ExecRunner {
  run(req: unknown): Promise<ExecResponse>
}

export interface ControlHandler {
  handle(req: unknown): Promise<ControlResponse>
}

/** Runs typed actions (actions.ts). */
export interface ActionHandler {
  act(req: unknown): Promise<ExecResponse>
  runAcked(actions: readonly TypedAction[]): void
}

export interface BridgeOptions {
  url: string
  /** Every server URL to try, in turn after each failure (a cluster); default `[url]`. */
  urls?: string[]
  token: string
  botName: string
  log: Logger
  executor: ExecRunner
  reconnectDelayMs: number
  reconnectDelayMaxMs: number
  /** Period of the client's own heartbeat; 0 disables it. */
  heartbeatMs: number
  /** Extra fields of each client heartbeat (e.g. `{wechaty: {...}}`); called once per beat. */
  heartbeatPayload?: () => JsonObject
  /** Called when retrying cannot help (token or protocol refused); the caller exits with `exitCode`. */
  onFatal: (message: string, exitCode: number) => void
  /** Called on every successful (re)connect. */
  onConnect?: () => void
  /** Where unacknowledged events live; default: in memory, 10 000 events / 64 MiB. Closed by close(). */
  outbox?: Outbox
  /** An event unacknowledged this long is reported and left for the next reconnect (default 30 000). */
  ackTimeoutMs?: number
  /** Answers `control` requests; without one they get a `bad_request` error. */
  control?: ControlHandler
  /** Runs `act` requests and the actions of acks; without one they get a `bad_request` error. */
  actions?: ActionHandler
  /** Told the server's wish for the bot's own messages at every authentication. */
  onSelfMessages?: (on: boolean) => void
  /** What the bot's channel can do, sent in the auth payload as `capabilities`. */
  capabilities?: Capabilities
  /** Take the bot over from a client connected with the same name (client.replace_existing). */
  replaceExisting?: boolean
  /** How long the server gets for each step of the handshake (default 10 000 ms). */
  handshakeTimeoutMs?: number
  /** The server's frame limit; updated from every handshake. Default: 64 MiB until told. */
  wireLimit?: WireLimit
  /** Where undeliverable (oversized) events go; default: logged only. */
  deadLetters?: DeadLetters
  /** Randomness of the reconnect jitter (tests). */
  random?: () => number
  /** Extra socket.io-client options (tests). */
  socketOptions?: Partial<ManagerOptions & SocketOptions>
}

/** A refusal that will not fix itself by retrying. */
const FATAL_REFUSAL = /token|protocol|auth/i

export class Bridge {
  readonly outbox: Outbox
  /** One socket per server URL; `socket` is the one in use. */
  readonly sockets: Socket[]
  readonly urls: string[]
  private current = 0
  /** Counters for tests and diagnostics. */
  readonly stats = {
    sent: 0,
    resent: 0,
    acked: 0,
    rejected: 0,
    deferred: 0,
    ackTimeouts: 0,
    connects: 0,
    deadLettered: 0,
    /** Servers that could not prove they hold the token. */
    impostors: 0,
    /** Refusals because another client has the bot. */
    botTaken: 0,
  }
  readonly wireLimit: WireLimit
  /** The last reconnect delays (ms), newest last, at most 50. */
  readonly retryDelays: number[] = []

  private connection = 0
  /** Failed connection attempts since the last connect (for logs). */
  private failedAttempts = 0
  /** Position in the backoff sequence; back to 0 after a connection that lasted. */
  private backoffAttempt = 0
  private connectedAt = 0
  private deferredLogged = 0
  private heartbeatTimer: NodeJS.Timeout | undefined
  private ackTimer: NodeJS.Timeout | undefined
  private retryTimer: NodeJS.Timeout | undefined
  private closed = true
  private readonly startedAt = Date.now()
  private readonly ackTimeoutMs: number
  private readonly handshakeTimeoutMs: number
  /** The nonce of the connection attempt in progress (a fresh one each time). */
  private clientNonce = ''
  /** True once the server proved itself and accepted our proof, on this connection. */
  private authenticated = false
  private handshakeTimer: NodeJS.Timeout | undefined
  /** Socket.IO connects so far: a late answer from an earlier one is ignored. */
  private attempt = 0
  private readonly watchedEngines = new WeakSet<object>()

  constructor(private readonly options: BridgeOptions) {
    this.outbox =
      options.outbox ?? new Outbox({ path: null, maxEvents: 10_000, maxBytes: 64 * 1024 * 1024, log: options.log })
    this.ackTimeoutMs = options.ackTimeoutMs ?? 30_000
    this.wireLimit = options.wireLimit ?? new WireLimit()
    this.handshakeTimeoutMs = options.handshakeTimeoutMs ?? 10_000
    // A function: socket.io-client calls it for every (re)connect, so every attempt gets a fresh nonce.
    const auth = (cb: (data: object) => void): void => {
      const payload = authPayload(options.token, 'puppet', {
        bot: options.botName,
        capabilities: options.capabilities,
        replace: options.replaceExisting === true,
      })
      this.clientNonce = payload.nonce
      cb(payload)
    }
    this.urls = options.urls !== undefined && options.urls.length > 0 ? [...options.urls] : [options.url]
    this.sockets = this.urls.map((url) =>
      io(url, {
        autoConnect: false,
        transports: ['websocket'],
        // Compressing every frame cost a quarter of the client's CPU on loopback
        // (bench/messages.py). `false` stops the negotiation; Node's `ws` takes it, the typing
        // only lists the threshold form.
        perMessageDeflate: false as unknown as { threshold: number },
        auth,
        reconnection: false,
        ...options.socketOptions,
      }),
    )
    this.sockets.forEach((socket, index) => this.wire(socket, this.urls[index]!))
  }

  /** The socket in use (of the URL tried last). */
  get socket(): Socket {
    return this.sockets[this.current]!
  }

  /** The server URL in use. */
  get url(): string {
    return this.urls[this.current]!
  }

  /** Connected, and both sides proved they hold the token. */
  get connected(): boolean {
    return this.socket.connected && this.authenticated
  }

  /** Starts connecting (and retrying) in the background. */
  start(): void {
    this.closed = false
    this.connectNow()
    if (this.options.heartbeatMs > 0) {
      this.heartbeatTimer = setInterval(() => this.clientHeartbeat(), this.options.heartbeatMs)
      this.heartbeatTimer.unref()
    }
    const sweepMs = Math.max(10, Math.min(1_000, Math.floor(this.ackTimeoutMs / 4)))
    this.ackTimer = setInterval(() => this.sweepAcks(), sweepMs)
    this.ackTimer.unref()
  }

  /**
   * Queues an event envelope, and sends it once its outbox line is written (`written` is called
   * then); heartbeats are sent only if connected and never stored.
   */
  send(envelope: EventEnvelope, written?: () => void): void {
    if (envelope.name === 'heartbeat') {
      if (this.connected) this.socket.volatile.emit(WIRE.event, envelope)
      written?.()
      return
    }
    const json = JSON.stringify(envelope)
    const bytes = Buffer.byteLength(json)
    if (this.wireLimit.tooLarge(bytes)) {
      this.deadLetter(envelope, json, 'too_large_for_server', bytes)
      written?.()
      return
    }
    if (Outbox.lineBytes(bytes) > this.outbox.maxBytes) {
      this.deadLetter(envelope, json, 'too_large_for_outbox', bytes)
      written?.()
      return
    }
    const entry = this.outbox.add(envelope, json)
    this.outbox.whenWritten(() => {
      if (entry !== undefined && entry.sentOn === 0 && this.connected && this.outbox.get(envelope.id) === entry) {
        this.transmit(entry)
      }
      written?.()
    })
  }

  /** Resolves once no event awaits an ack or a send, the link is down, or `timeoutMs` passed. */
  async drain(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs
    while (this.connected && Date.now() < deadline && this.outbox.pending().some((e) => !e.parked)) {
      await new Promise((resolve) => setTimeout(resolve, 10))
    }
  }

  /** Disconnects for good and closes the outbox (its file is compacted). */
  close(): void {
    this.closed = true
    clearInterval(this.heartbeatTimer)
    clearInterval(this.ackTimer)
    clearTimeout(this.retryTimer)
    clearTimeout(this.handshakeTimer)
    for (const socket of this.sockets) socket.disconnect()
    this.outbox.close()
  }

  /**
   * Moves an event that can never be delivered to the dead letters and tells the server with an
   * `error` event naming it; the events behind it go on.
   */
  private deadLetter(envelope: EventEnvelope, json: string | undefined, reason: DeadLetterReason, jsonBytes: number): void {
    this.stats.deadLettered++
    const server = reason === 'too_large_for_server'
    const size = server ? jsonBytes + FRAME_OVERHEAD : Outbox.lineBytes(jsonBytes)
    const limit = server ? this.wireLimit.bytes : this.outbox.maxBytes
    const file = this.options.deadLetters?.add({ reason, envelope, json, size, limit }) ?? null
    const what = server
      ? `the server's frame limit of ${this.wireLimit.describe()}`
      : `the outbox's limit of ${limit} bytes (client.outbox_max_bytes)`
    const message =
      `event ${envelope.id} (${envelope.name}, about ${size} bytes) is larger than ${what}: it is not sent; ` +
      (file === null ? 'it is dropped (no dead letters file)' : `it is kept in the dead letters file ${file}`)
    this.options.log.error('%s', message)
    if (envelope.name === 'error') return // never an error about an error
    this.send({
      id: randomUUID(),
      bot: this.options.botName,
      name: 'error',
      payload: {
        name: 'EventTooLarge',
        message,
        stack: null,
        event: { id: envelope.id, name: envelope.name, size, limit },
        dead_letter: file,
      },
      ts: Date.now(),
    })
  }

  private transmit(entry: OutboxEntry): void {
    // The limit may be lower than when the event was queued (a new server, or one loaded from the file).
    const jsonBytes = entry.bytes - Outbox.lineBytes(0)
    if (this.wireLimit.tooLarge(jsonBytes)) {
      this.outbox.remove(entry.envelope.id)
      this.deadLetter(entry.envelope, undefined, 'too_large_for_server', jsonBytes)
      return
    }
    if (entry.sentOn !== 0) this.stats.resent++
    this.stats.sent++
    const connection = this.connection
    entry.sentOn = connection
    entry.sentAt = Date.now()
    entry.parked = false
    entry.attempts++
    const { id } = entry.envelope
    // `attempt` 1: no server can have seen it (a cluster skips the synchronous dedupe for it)
    const sent: EventEnvelope = { ...entry.envelope, attempt: entry.attempts }
    this.socket.emit(WIRE.event, sent, (ack: unknown) => this.onEventAck(id, connection, ack))
  }

  private onEventAck(id: string, connection: number, ack: unknown): void {
    const entry = this.outbox.get(id)
    if (entry === undefined || entry.sentOn !== connection) return
    const { name } = entry.envelope
    const { log } = this.options
    const isObject = typeof ack === 'object' && ack !== null
    if (!isObject || (ack as { ok?: unknown }).ok !== false) {
      if (!(isObject && (ack as { ok?: unknown }).ok === true)) {
        log.debug('unexpected ack for %s event %s (taken as ok): %j', name, id, ack)
      }
      this.stats.acked++
      const actions = isObject ? this.ackActions(id, (ack as { actions?: unknown }).actions) : []
      if (actions.length === 0) {
        this.outbox.remove(id)
        return
      }
      // Acknowledged with a reply: recorded as pending with the release, run once written.
      this.outbox.release(id, actions)
      this.outbox.whenWritten(() => this.options.actions?.runAcked(actions))
      return
    }
    const raw = (ack as { error?: unknown }).error
    const error = (typeof raw === 'object' && raw !== null ? raw : {}) as { kind?: unknown; name?: unknown; message?: unknown }
    const kind = typeof error.kind === 'string' ? error.kind : 'unknown'
    const text = `${String(error.name ?? 'Error')}: ${String(error.message ?? JSON.stringify(ack))}`
    if (EVENT_ACK_DROP_KINDS.includes(kind)) {
      this.stats.rejected++
      log.warn('server rejected %s event %s (%s) %s; dropped, not re-sent', name, id, kind, text)
      this.outbox.remove(id)
      return
    }
    // `unavailable` (the server is shutting down) or a kind this client does not know: keep it,
    // and send it again after the next reconnect, not now (that would spin).
    this.stats.deferred++
    entry.parked = true
    if (this.deferredLogged !== connection) {
      this.deferredLogged = connection
      log.warn(
        'server could not take %s event %s (%s) %s; kept, it and any others like it are re-sent after the next reconnect',
        name,
        id,
        kind,
        text,
      )
    } else {
      log.debug('server could not take %s event %s (%s); kept for the next reconnect', name, id, kind)
    }
  }

  /** The typed actions an ack carries (bad ones are logged and left out). */
  private ackActions(id: string, raw: unknown): TypedAction[] {
    if (raw === undefined || raw === null) return []
    if (!Array.isArray(raw)) {
      this.options.log.warn('the ack of event %s carries actions that are not a list; ignored', id)
      return []
    }
    const actions: TypedAction[] = []
    for (const item of raw) {
      const action = parseAction(item)
      if (typeof action === 'string') this.options.log.warn('the ack of event %s carries a bad action (%s); left out', id, action)
      else actions.push(action)
    }
    if (actions.length > 0 && this.options.actions === undefined) {
      this.options.log.warn('the ack of event %s carries %d actions but this client runs none', id, actions.length)
    }
    return actions
  }

  /** Reports events unacknowledged past the ack timeout; they wait for the next reconnect. */
  private sweepAcks(): void {
    if (!this.connected) return
    const now = Date.now()
    let overdue = 0
    for (const entry of this.outbox.pending()) {
      if (entry.sentOn === this.connection && !entry.parked && now - entry.sentAt >= this.ackTimeoutMs) {
        entry.parked = true
        overdue++
      }
    }
    if (overdue === 0) return
    this.stats.ackTimeouts += overdue
    this.options.log.warn(
      '%d events not acknowledged within %d ms; kept, re-sent after the next reconnect (a late ack still counts)',
      overdue,
      this.ackTimeoutMs,
    )
  }

  private clientHeartbeat(): void {
    if (!this.connected) return
    let extra: JsonObject = {}
    try {
      extra = this.options.heartbeatPayload?.() ?? {}
    } catch (e) {
      this.options.log.debug('heartbeat payload failed: %s', e)
    }
    this.send({
      id: randomUUID(),
      bot: this.options.botName,
      name: 'heartbeat',
      payload: { source: 'client', uptime_s: Math.round((Date.now() - this.startedAt) / 1000), ...extra },
      ts: Date.now(),
    })
  }

  private wire(socket: Socket, url: string): void {
    const { log, executor } = this.options

    socket.on('connect', () => {
      if (socket !== this.socket) return // a server URL this client moved away from
      // Socket.IO is connected, but nothing is sent or run until the server has proved itself.
      this.attempt++
      this.authenticated = false
      clearTimeout(this.handshakeTimer)
      this.handshakeTimer = setTimeout(() => {
        log.warn('the server at %s sent no challenge within %d ms; reconnecting', url, this.handshakeTimeoutMs)
        socket.disconnect()
        this.retryLater()
      }, this.handshakeTimeoutMs)
    })

    socket.on(WIRE.challenge, (data: unknown) => {
      if (socket === this.socket) this.onChallenge(data)
    })

    socket.on('disconnect', (reason) => {
      if (socket !== this.socket) return
      this.authenticated = false
      clearTimeout(this.handshakeTimer)
      if (this.closed) return
      // A connection that lasted restarts the backoff sequence; a flapping one keeps climbing.
      if (Date.now() - this.connectedAt >= this.options.reconnectDelayMaxMs) this.backoffAttempt = 0
      log.warn('disconnected from %s (%s); reconnecting', url, reason)
      this.retryLater()
    })

    socket.on('connect_error', (err: Error) => {
      if (this.closed || socket !== this.socket) return
      this.failedAttempts++
      const reason = err.message
      if (!socket.active) {
        // The server answered and refused us.
        if (FATAL_REFUSAL.test(reason)) {
          // A server of protocol 1 asks for the token itself: this client never sends it.
          const older = /missing token/i.test(reason) ? '; the server speaks an older protocol: update it' : ''
          this.options.onFatal(
            `the server at ${url} refused this client: ${reason}${older} (check server.token / METAPUPPET_TOKEN and that both sides run the same MetaPuppet version)`,
            2,
          )
          return
        }
        log.warn('the server at %s refused the connection: %s; retrying', url, reason)
        this.retryLater()
        return
      }
      // Transport errors carry the system error (e.g. ECONNREFUSED) in `description`.
      const cause = (err as { description?: { message?: unknown } }).description?.message
      const detail = typeof cause === 'string' && cause !== '' && cause !== reason ? `${reason}: ${cause}` : reason
      const message = `cannot connect to the MetaPuppet server at ${url} (${detail}); retrying (is the server running?)`
      if (this.failedAttempts <= 3 || this.failedAttempts % 10 === 0) {
        log.warn('%s [attempt %d]', message, this.failedAttempts)
      } else {
        log.debug('%s [attempt %d]', message, this.failedAttempts)
      }
      this.retryLater()
    })

    socket.on(WIRE.exec, (req: unknown, ack?: unknown) => {
      if (typeof req === 'function' && ack === undefined) [req, ack] = [undefined, req]
      if (this.refuseUnauthenticated('exec', ack)) return
      const reply = typeof ack === 'function' ? (ack as (r: ExecResponse) => void) : undefined
      if (reply === undefined) log.warn('exec request without an ack callback: the result will be dropped')
      executor
        .run(req)
        .then(
          (response) => reply?.(response),
          (e: unknown) => reply?.({ ok: false, error: fromThrown('runtime', e) }),
        )
        .catch((e: unknown) => log.error('could not answer an exec request: %s', e))
    })

    socket.on(WIRE.act, (req: unknown, ack?: unknown) => {
      if (typeof req === 'function' && ack === undefined) [req, ack] = [undefined, req]
      if (this.refuseUnauthenticated('act', ack)) return
      const reply = typeof ack === 'function' ? (ack as (r: ExecResponse) => void) : undefined
      const actions = this.options.actions
      const running: Promise<ExecResponse> = actions
        ? actions.act(req)
        : Promise.resolve({ ok: false, error: { kind: 'bad_request', name: 'BadRequest', message: 'this client runs no actions', stack: null } })
      running
        .then(
          (response) => reply?.(response),
          (e: unknown) => reply?.({ ok: false, error: fromThrown('runtime', e) }),
        )
        .catch((e: unknown) => log.error('could not answer an act request: %s', e))
    })

    socket.on(WIRE.echo, (data: unknown, ack?: unknown) => {
      if (this.refuseUnauthenticated('echo', typeof data === 'function' && ack === undefined ? data : ack)) return
      if (typeof data === 'function' && ack === undefined) {
        ;(data as (d: null) => void)(null)
        return
      }
      if (typeof ack === 'function') (ack as (d: unknown) => void)(data)
    })

    socket.on(WIRE.control, (req: unknown, ack?: unknown) => {
      if (typeof req === 'function' && ack === undefined) [req, ack] = [undefined, req]
      if (this.refuseUnauthenticated('control', ack)) return
      let answered = false
      const reply = (response: ControlResponse): void => {
        if (answered) return
        answered = true
        if (typeof ack === 'function') (ack as (r: ControlResponse) => void)(response)
        else log.warn('control request without an ack callback: answered %j to nobody', response)
      }
      const handler = this.options.control
      const running: Promise<ControlResponse> = handler
        ? Promise.resolve().then(() => handler.handle(req))
        : Promise.resolve({
            ok: false,
            error: { kind: 'bad_request', name: 'BadRequest', message: 'this client has no control handler', stack: null },
          })
      running
        .then(reply, (e: unknown) => reply({ ok: false, error: fromThrown('runtime', e) }))
        .catch((e: unknown) => log.error('could not answer a control request: %s', e))
    })
  }

  /** Step 2 of the handshake: check the server's proof, then prove ourselves. */
  private onChallenge(data: unknown): void {
    const { log, token, botName } = this.options
    const { socket, url } = this
    if (this.authenticated) {
      log.warn('the server at %s sent a second challenge; ignored', url)
      return
    }
    const challenge = parseChallenge(data)
    const handshake = {
      role: 'puppet' as const,
      bot: botName,
      clientNonce: this.clientNonce,
      serverNonce: challenge?.nonce ?? '',
      replace: this.options.replaceExisting === true,
    }
    if (challenge === null || this.clientNonce === '' || !proofMatches(serverProof(token, handshake), challenge.proof)) {
      clearTimeout(this.handshakeTimer)
      this.stats.impostors++
      log.error(
        'the server at %s could not prove it holds the token: refusing to talk to it, nothing was sent (is another program listening on that address?); retrying later',
        url,
      )
      socket.disconnect()
      this.retryLater()
      return
    }
    const attempt = this.attempt
    socket
      .timeout(this.handshakeTimeoutMs)
      .emit(WIRE.authenticate, { proof: clientProof(token, handshake) }, (err: Error | null, ack: AuthAck) => {
        if (this.attempt !== attempt || !socket.connected) return
        clearTimeout(this.handshakeTimer)
        if (err !== null) {
          log.warn('the server at %s did not answer our proof; reconnecting', url)
          socket.disconnect()
          this.retryLater()
          return
        }
        if (typeof ack !== 'object' || ack === null || ack.ok !== true) {
          const error = (ack as { error?: { kind?: unknown; message?: unknown } } | null)?.error
          const reason = typeof error?.message === 'string' ? error.message : JSON.stringify(ack)
          if (error?.kind === 'bot_taken') {
            this.stats.botTaken++
            const every = this.stats.botTaken <= 3 || this.stats.botTaken % 10 === 0
            if (every) log.warn('the server refused this client: %s; retrying later', reason)
            else log.debug('the server refused this client again: %s', reason)
          } else {
            log.warn('the server at %s refused our proof: %s; retrying later', url, reason)
          }
          socket.disconnect()
          this.retryLater()
          return
        }
        this.onAuthenticated(ack.self_messages === true)
      })
  }

  /** Both sides proved themselves: the link is up. */
  private onAuthenticated(selfMessages: boolean): void {
    const { log } = this.options
    const url = this.url
    this.options.onSelfMessages?.(selfMessages)
    this.outbox.flush() // what is sent now must be on disk first
    this.authenticated = true
    clearTimeout(this.retryTimer)
    this.retryTimer = undefined
    this.connection++
    this.stats.connects++
    this.connectedAt = Date.now()
    if (this.failedAttempts > 0) log.info('connected to %s after %d failed attempts', url, this.failedAttempts)
    else log.info('connected to %s (mutually authenticated)', url)
    this.failedAttempts = 0
    this.stats.botTaken = 0
    const pending = this.outbox.pending()
    if (pending.length > 0) log.info('sending %d unacknowledged events first', pending.length)
    for (const entry of pending) {
      if (entry.sentOn !== this.connection) this.transmit(entry)
    }
    this.options.onConnect?.()
  }

  /** Answers a request that came before the server proved itself with an error, and says so. */
  private refuseUnauthenticated(what: string, ack: unknown): boolean {
    if (this.authenticated) return false
    this.options.log.warn('refused a %s request from a server that has not authenticated', what)
    if (typeof ack === 'function') {
      ;(ack as (r: ExecResponse) => void)({
        ok: false,
        error: { kind: 'bad_request', name: 'Unauthenticated', message: 'the server has not proved it holds the token', stack: null },
      })
    }
    return true
  }

  /** Schedules the next connection attempt with backoff (one pending attempt at a time). */
  private retryLater(): void {
    if (this.closed || this.retryTimer !== undefined) return
    const { reconnectDelayMs: base, reconnectDelayMaxMs: max } = this.options
    const delay = reconnectDelay(++this.backoffAttempt, base, max, this.options.random)
    this.retryDelays.push(delay)
    if (this.retryDelays.length > 50) this.retryDelays.shift()
    this.options.log.debug('next connection attempt in %d ms (backoff step %d)', delay, this.backoffAttempt)
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined
      if (this.closed || this.socket.connected) return
      if (this.sockets.length > 1) {
        // a cluster: after a failure, the next server process
        this.socket.disconnect()
        this.current = (this.current + 1) % this.sockets.length
        this.options.log.debug('trying the next server URL, %s', this.url)
      }
      this.connectNow()
    }, delay)
  }

  /** Connects, and reads the server's frame limit from the Engine.IO handshake of that attempt. */
  private connectNow(): void {
    this.socket.connect()
    const engine = this.socket.io.engine as { on?: (event: string, listener: (data: unknown) => void) => void } | undefined
    if (engine === undefined || typeof engine.on !== 'function' || this.watchedEngines.has(engine)) return
    this.watchedEngines.add(engine)
    engine.on('handshake', (data: unknown) => {
      const before = this.wireLimit.bytes
      const announced = (data as { maxPayload?: unknown } | null)?.maxPayload
      if (this.wireLimit.learn(announced) && this.wireLimit.bytes !== before) {
        this.options.log.info('the server accepts frames of up to %d bytes; larger events go to the dead letters', this.wireLimit.bytes)
      }
    })
  }
}
