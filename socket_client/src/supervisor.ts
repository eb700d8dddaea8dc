/**
 * A puppet that cannot get through, and puppet errors that repeat.
 *
 * `PuppetSupervisor`: a puppet that fails while it is not logged in (before its first scan, or
 * waiting for one, or after a logout) is stopped and started again after a backoff (doubling, capped, jittered: backoff.ts), instead of
 * letting it spin. wechaty-puppet-wechat4u without a network restarts itself on every failed
 * request, hundreds of times a second when the connection is refused. Python hears ONE `error`
 * event per distinct cause ("cannot reach WeChat: …; retrying in N s", with `puppet` state), and
 * every client heartbeat carries the current state. SIGTERM stops it like any other client.
 *
 * `ErrorGate`: identical errors (same name and message) are forwarded at most once per interval;
 * the next one says how many were held back. Distinct errors are capped per interval too, so a
 * chatty puppet cannot push everything else out of the dashboard's recent events.
 */
import type { Wechaty } from 'wechaty'
import { reconnectDelay } from './backoff.js'
import type { Logger } from './log.js'
import type { ErrorEventPayload, PuppetHealth } from './protocol.js'

/** Errors that mean the network (or the service) is out of reach. */
const UNREACHABLE =
  /ENOTFOUND|EAI_AGAIN|ECONNREFUSED|ECONNRESET|ETIMEDOUT|EHOSTUNREACH|ENETUNREACH|EPIPE|socket hang up|network|UNAVAILABLE|No connection established/i

export interface SupervisorOptions {
  bot: Wechaty
  log: Logger
  /** What the puppet reaches: "WeChat", or "the puppet service at host:port". */
  target: string
  /** First retry delay and its cap (config client.puppet_retry_delay_ms / _max_ms). */
  retryDelayMs: number
  retryDelayMaxMs: number
  /** Sends one `error` event payload to Python. */
  report: (payload: ErrorEventPayload) => void
  /** Limit for bot.stop() and bot.start() (default 10 000 ms). */
  stepTimeoutMs?: number
  random?: () => number
}

export class PuppetSupervisor {
  /** Counters for tests and diagnostics. */
  readonly stats = { failures: 0, restarts: 0, swallowed: 0, reported: 0 }

  private health: PuppetHealth = { state: 'starting', message: null, retry_in_s: null, attempts: 0 }
  private through = false
  /** A stop or a wait for the next start is under way: further errors are the failing puppet's noise. */
  private recovering = false
  private retryTimer: NodeJS.Timeout | undefined
  private lastCause = ''
  private quietUntil = 0
  private stopped = false
  private readonly detach: () => void

  constructor(private readonly options: SupervisorOptions) {
    const { bot } = options
    // A scan shows the puppet reached WeChat (state `running`), but only a login makes its
    // errors ordinary ones: wechat4u waiting for a scan spins just the same when the network goes.
    const scan = (): void => this.reached(false)
    const login = (): void => this.reached(true)
    const down = (): void => {
      this.through = false
      if (!this.stopped && !this.recovering) this.set({ state: 'starting', message: null, retry_in_s: null })
    }
    bot.on('scan', scan)
    bot.on('login', login)
    bot.on('logout', down)
    this.detach = () => {
      bot.off('scan', scan)
      bot.off('login', login)
      bot.off('logout', down)
    }
  }

  /** The state for the heartbeat. */
  state(): PuppetHealth {
    return { ...this.health }
  }

  /**
   * Takes one puppet error. True when it is a start failure the supervisor handles (do not
   * forward it: its one `error` event says it all); false for an ordinary error.
   */
  consume(error: ErrorEventPayload): boolean {
    if (this.stopped || this.through) return false
    if (this.recovering) {
      this.stats.swallowed++
      return true
    }
    this.fail(error)
    return true
  }

  /** `bot.start()` itself rejected (main.ts): a failed start like any other. */
  startFailed(e: unknown): void {
    if (this.stopped || this.through || this.recovering) return
    this.fail({ name: 'StartError', message: e instanceof Error ? e.message : String(e), stack: null })
  }

  /** True shortly after the supervisor stopped the puppet (its stop leaves stray rejections behind). */
  quiet(): boolean {
    return this.recovering || Date.now() < this.quietUntil
  }

  /** No more restarts (shutdown). */
  stop(): void {
    this.stopped = true
    clearTimeout(this.retryTimer)
    this.retryTimer = undefined
    this.detach()
    this.set({ state: 'stopped', retry_in_s: null })
  }

  private reached(loggedIn: boolean): void {
    if (loggedIn) this.through = true
    if (this.stopped || this.recovering) return
    if (this.health.attempts > 0) {
      this.options.log.info('the puppet got through to %s after %d failed starts', this.options.target, this.health.attempts)
    }
    this.lastCause = ''
    this.set({ state: 'running', message: null, retry_in_s: null, attempts: 0 })
  }

  private fail(error: ErrorEventPayload): void {
    const { log, target } = this.options
    this.stats.failures++
    this.recovering = true
    const attempts = this.health.attempts + 1
    const delayMs = reconnectDelay(attempts, this.options.retryDelayMs, this.options.retryDelayMaxMs, this.options.random)
    const seconds = Math.max(1, Math.round(delayMs / 1000))
    const cause = `${UNREACHABLE.test(`${error.name} ${error.message}`) ? `cannot reach ${target}` : 'the puppet cannot start'}: ${error.message}`
    const message = `${cause}; retrying in ${seconds} s`
    this.set({ state: 'retrying', message, retry_in_s: seconds, attempts })
    if (attempts <= 3 || attempts % 10 === 0) log.warn('%s [failed start %d]', message, attempts)
    else log.debug('%s [failed start %d]', message, attempts)
    if (cause !== this.lastCause) {
      // One event per distinct cause; the heartbeat carries the rest (attempts, next retry).
      this.lastCause = cause
      this.stats.reported++
      this.options.report({ name: 'PuppetUnavailable', message, stack: null, puppet: this.state() })
    }
    void this.restartLater(delayMs)
  }

  private async restartLater(delayMs: number): Promise<void> {
    const { bot, log } = this.options
    const stepMs = this.options.stepTimeoutMs ?? 10_000
    try {
      await within(bot.stop(), stepMs, 'bot.stop()')
    } catch (e) {
      log.debug('stopping the failing puppet: %s', e instanceof Error ? e.message : String(e))
    }
    this.quietUntil = Date.now() + 2_000
    if (this.stopped) return
    await new Promise<void>((resolve) => {
      this.retryTimer = setTimeout(resolve, delayMs)
    })
    this.retryTimer = undefined
    if (this.stopped) return
    this.recovering = false
    this.through = false
    this.stats.restarts++
    this.set({ state: 'starting', retry_in_s: null })
    try {
      await within(bot.start(), stepMs, 'bot.start()')
    } catch (e) {
      const message = e instanceof Error ? e.message : String(e)
      if (!this.stopped && !this.through && !this.recovering) this.fail({ name: 'StartError', message, stack: null })
    }
  }

  private set(change: { state?: PuppetHealth['state']; message?: string | null; retry_in_s?: number | null; attempts?: number }): void {
    this.health = {
      state: change.state ?? this.health.state,
      message: change.message !== undefined ? change.message : this.health.message,
      retry_in_s: change.retry_in_s !== undefined ? change.retry_in_s : this.health.retry_in_s,
      attempts: change.attempts ?? this.health.attempts,
    }
  }
}

export interface ErrorGateOptions {
  /** Identical errors are forwarded at most once per interval (config client.error_repeat_ms). */
  intervalMs: number
  forward: (payload: ErrorEventPayload) => void
  /** At most this many errors are forwarded per interval, all kinds together (default 30). */
  maxPerInterval?: number
  /** Distinct errors remembered (default 200). */
  maxKinds?: number
}

interface Held {
  count: number
  latest: ErrorEventPayload
  timer: NodeJS.Timeout
}

export class ErrorGate {
  /** Errors held back so far (tests, diagnostics). */
  suppressed = 0
  private readonly held = new Map<string, Held>()
  private windowStart = 0
  private sentInWindow = 0
  private overflow = 0
  private overflowTimer: NodeJS.Timeout | undefined

  constructor(private readonly options: ErrorGateOptions) {}

  /** Forwards `payload` now, or counts it for a later "repeated N times" line. */
  admit(payload: ErrorEventPayload): void {
    const key = `${payload.name}\u0000${payload.message}`
    const held = this.held.get(key)
    if (held !== undefined) {
      held.count++
      held.latest = payload
      this.suppressed++
      return
    }
    if (!this.budget()) {
      this.overflow++
      this.suppressed++
      this.overflowTimer ??= setTimeout(() => this.flushOverflow(), this.options.intervalMs).unref()
      return
    }
    this.options.forward(payload)
    this.track(key, payload)
  }

  /** Drops every timer (shutdown); held-back counts are not sent. */
  close(): void {
    for (const held of this.held.values()) clearTimeout(held.timer)
    this.held.clear()
    clearTimeout(this.overflowTimer)
  }

  private track(key: string, payload: ErrorEventPayload): void {
    if (this.held.size >= (this.options.maxKinds ?? 200)) {
      const oldest = this.held.keys().next().value as string
      clearTimeout(this.held.get(oldest)!.timer)
      this.held.delete(oldest)
    }
    const timer = setTimeout(() => this.endWindow(key), this.options.intervalMs)
    timer.unref()
    this.held.set(key, { count: 0, latest: payload, timer })
  }

  private endWindow(key: string): void {
    const held = this.held.get(key)
    if (held === undefined) return
    this.held.delete(key)
    if (held.count === 0) return
    const seconds = Number((this.options.intervalMs / 1000).toFixed(1))
    this.options.forward({
      ...held.latest,
      message: `${held.latest.message} (${held.count} more times in the last ${seconds} s)`,
      repeated: held.count,
    })
    this.track(key, held.latest) // the next repeats wait for the next interval
  }

  private budget(): boolean {
    const now = Date.now()
    if (now - this.windowStart >= this.options.intervalMs) {
      this.windowStart = now
      this.sentInWindow = 0
    }
    if (this.sentInWindow >= (this.options.maxPerInterval ?? 30)) return false
    this.sentInWindow++
    return true
  }

  private flushOverflow(): void {
    this.overflowTimer = undefined
    if (this.overflow === 0) return
    const seconds = Number((this.options.intervalMs / 1000).toFixed(1))
    this.options.forward({
      name: 'ErrorsSuppressed',
      message: `${this.overflow} more puppet errors in the last ${seconds} s were not forwarded (at most ${this.options.maxPerInterval ?? 30} per ${seconds} s)`,
      stack: null,
      repeated: this.overflow,
    })
    this.overflow = 0
  }
}

function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${what} did not finish within ${ms} ms`)), ms)
    promise.then(
      (value) => {
        clearTimeout(timer)
        resolve(value)
      },
      (e: unknown) => {
        clearTimeout(timer)
        reject(e)
      },
    )
  })
}
