/**
 * The Socket.IO link to the MetaPuppet server.
 *
 * - Authenticates as a puppet: `auth: {token, role: "puppet", protocol, bot}`.
 * - Forwards event envelopes through an outbox: an event stays in it until the server
 *   acknowledges it, and every unacknowledged event is sent again, in order, after a
 *   reconnect (the server drops duplicates by id). Events are only emitted while connected,
 *   so Socket.IO's own send buffer never holds (and never replays) a copy.
 * - Heartbeats are sent only while connected and never stored.
 * - Answers `exec` (run a snippet) and `echo` (raw round trip) through their acks.
 */
import { io, type ManagerOptions, type Socket, type SocketOptions } from 'socket.io-client'
import { randomUUID } from 'node:crypto'
import type { Logger } from './log.js'
import { PROTOCOL_VERSION, WIRE, type AuthPayload, type EventEnvelope, type ExecResponse } from './protocol.js'
import { fromThrown } from './executor.js'

export interface ExecRunner {
  run(req: unknown): Promise<ExecResponse>
}

export interface BridgeOptions {
  url: string
  token: string
  botName: string
  log: Logger
  executor: ExecRunner
  reconnectDelayMs: number
  reconnectDelayMaxMs: number
  /** Period of the client's own heartbeat; 0 disables it. */
  heartbeatMs: number
  /** Called when retrying cannot help (token or protocol refused); the caller exits with `exitCode`. */
  onFatal: (message: string, exitCode: number) => void
  /** Called on every successful (re)connect. */
  onConnect?: () => void
  /** Oldest unacknowledged events are dropped beyond this many. */
  maxOutbox?: number
  /** Extra socket.io-client options (tests). */
  socketOptions?: Partial<ManagerOptions & SocketOptions>
}

interface OutboxEntry {
  envelope: EventEnvelope
  /** The connection number this entry was last sent on (0: never sent). */
  sentOn: number
}

/** A refusal that will not fix itself by retrying. */
const FATAL_REFUSAL = /token|protocol|auth/i

export class Bridge {
  /** Unacknowledged events, in emission order, keyed by envelope id. */
  readonly outbox = new Map<string, OutboxEntry>()
  readonly socket: Socket

  private connection = 0
  private failedAttempts = 0
  private heartbeatTimer: NodeJS.Timeout | undefined
  private retryTimer: NodeJS.Timeout | undefined
  private closed = false
  private readonly startedAt = Date.now()
  private readonly maxOutbox: number

  constructor(private readonly options: BridgeOptions) {
    this.maxOutbox = options.maxOutbox ?? 10_000
    const auth: AuthPayload = {
      token: options.token,
      role: 'puppet',
      protocol: PROTOCOL_VERSION,
      bot: options.botName,
    }
    this.socket = io(options.url, {
      autoConnect: false,
      transports: ['websocket'],
      auth,
      reconnection: true,
      reconnectionAttempts: Infinity,
      reconnectionDelay: options.reconnectDelayMs,
      reconnectionDelayMax: options.reconnectDelayMaxMs,
      randomizationFactor: 0.5,
      ...options.socketOptions,
    })
    this.wire()
  }

  get connected(): boolean {
    return this.socket.connected
  }

  /** Starts connecting (and retrying) in the background. */
  start(): void {
    this.closed = false
    this.socket.connect()
    if (this.options.heartbeatMs > 0) {
      this.heartbeatTimer = setInterval(() => this.clientHeartbeat(), this.options.heartbeatMs)
      this.heartbeatTimer.unref()
    }
  }

  /** Queues an event envelope; heartbeats are sent only if connected and never stored. */
  send(envelope: EventEnvelope): void {
    if (envelope.name === 'heartbeat') {
      if (this.socket.connected) this.socket.volatile.emit(WIRE.event, envelope)
      return
    }
    const entry: OutboxEntry = { envelope, sentOn: 0 }
    this.outbox.set(envelope.id, entry)
    if (this.outbox.size > this.maxOutbox) {
      const oldest = this.outbox.keys().next().value
      if (oldest !== undefined) {
        this.outbox.delete(oldest)
        this.options.log.warn('outbox full (%d events): dropped the oldest unacknowledged event', this.maxOutbox)
      }
    }
    if (this.socket.connected) this.transmit(entry)
  }

  /** Resolves once every queued event is acknowledged, the link is down, or `timeoutMs` passed. */
  async drain(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs
    while (this.outbox.size > 0 && this.socket.connected && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 10))
    }
  }

  close(): void {
    this.closed = true
    clearInterval(this.heartbeatTimer)
    clearTimeout(this.retryTimer)
    this.socket.disconnect()
  }

  private transmit(entry: OutboxEntry): void {
    entry.sentOn = this.connection
    const { id, name } = entry.envelope
    this.socket.emit(WIRE.event, entry.envelope, (ack: unknown) => this.onEventAck(id, name, ack))
  }

  private onEventAck(id: string, name: string, ack: unknown): void {
    if (!this.outbox.has(id)) return
    this.outbox.delete(id)
    if (typeof ack === 'object' && ack !== null && (ack as { ok?: unknown }).ok === false) {
      const error = (ack as { error?: { name?: unknown; message?: unknown } }).error
      this.options.log.warn(
        'server rejected %s event %s: %s: %s (not resent)',
        name,
        id,
        error?.name ?? 'Error',
        error?.message ?? JSON.stringify(ack),
      )
    } else if (!(typeof ack === 'object' && ack !== null && (ack as { ok?: unknown }).ok === true)) {
      this.options.log.debug('unexpected ack for %s event %s: %j', name, id, ack)
    }
  }

  private clientHeartbeat(): void {
    if (!this.socket.connected) return
    this.send({
      id: randomUUID(),
      bot: this.options.botName,
      name: 'heartbeat',
      payload: { source: 'client', uptime_s: Math.round((Date.now() - this.startedAt) / 1000) },
      ts: Date.now(),
    })
  }

  private wire(): void {
    const { log, url, executor } = this.options
    const socket = this.socket

    socket.on('connect', () => {
      this.connection++
      if (this.failedAttempts > 0) log.info('connected to %s after %d failed attempts', url, this.failedAttempts)
      else log.info('connected to %s', url)
      this.failedAttempts = 0
      const pending = [...this.outbox.values()]
      if (pending.length > 0) log.info('re-sending %d unacknowledged events', pending.length)
      for (const entry of pending) {
        if (entry.sentOn !== this.connection) this.transmit(entry)
      }
      this.options.onConnect?.()
    })

    socket.on('disconnect', (reason) => {
      if (this.closed) return
      log.warn('disconnected from %s (%s); reconnecting', url, reason)
      // After a server-side disconnect Socket.IO does not reconnect by itself.
      if (reason === 'io server disconnect') this.retryLater()
    })

    socket.on('connect_error', (err: Error) => {
      if (this.closed) return
      this.failedAttempts++
      const reason = err.message
      if (!socket.active) {
        // The server answered and refused us.
        if (FATAL_REFUSAL.test(reason)) {
          this.options.onFatal(
            `the server at ${url} refused this client: ${reason} (check server.token / METAPUPPET_TOKEN and that both sides run the same MetaPuppet version)`,
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
    })

    socket.on(WIRE.exec, (req: unknown, ack?: unknown) => {
      if (typeof req === 'function' && ack === undefined) [req, ack] = [undefined, req]
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

    socket.on(WIRE.echo, (data: unknown, ack?: unknown) => {
      if (typeof data === 'function' && ack === undefined) {
        ;(data as (d: null) => void)(null)
        return
      }
      if (typeof ack === 'function') (ack as (d: unknown) => void)(data)
    })
  }

  /** Reconnects by hand (after a refusal or a server-side disconnect), with backoff. */
  private retryLater(): void {
    if (this.closed) return
    clearTimeout(this.retryTimer)
    const { reconnectDelayMs: base, reconnectDelayMaxMs: max } = this.options
    const exp = Math.min(max, base * 2 ** Math.min(this.failedAttempts, 20))
    const delay = Math.round(exp * (0.5 + Math.random() * 0.5)) || base
    this.retryTimer = setTimeout(() => {
      if (!this.closed && !this.socket.active) this.socket.connect()
    }, delay)
  }
}
