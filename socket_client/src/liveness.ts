/**
 * Is the Wechaty puppet still answering? A ding → dong probe, run in the background.
 *
 * `probe()` calls `bot.puppet.ding(data)` and waits for the puppet's `dong` event carrying the
 * same `data`. One probe runs at a time; `state()` reports the latest completed one. A probe
 * without a dong within `timeoutMs` (or whose ding throws) marks the puppet not alive: that is
 * how a silent stall shows (the mock answers a ding after ~1 s).
 */
import { randomUUID } from 'node:crypto'
import type { Wechaty } from 'wechaty'
import type { Logger } from './log.js'
import type { WechatyLiveness } from './protocol.js'

export interface LivenessOptions {
  bot: Wechaty
  /** How long a ding may wait for its dong (config client.stall_probe_timeout_ms). */
  timeoutMs: number
  log: Logger
}

interface PuppetLike {
  ding(data?: string): unknown
  on(event: 'dong', listener: (payload: { data?: unknown }) => void): unknown
  off(event: 'dong', listener: (payload: { data?: unknown }) => void): unknown
  readonly isLoggedIn?: boolean
}

export class LivenessProbe {
  /** Counters for tests and diagnostics. */
  readonly stats = { probes: 0, failures: 0 }

  /** No evidence of a stall until a probe fails. */
  private alive = true
  private dingMs: number | null = null
  private running: Promise<void> | undefined
  private stopped = false
  private cancel: (() => void) | undefined

  constructor(private readonly options: LivenessOptions) {}

  /** The latest completed probe, plus whether the bot is logged in. */
  state(): WechatyLiveness {
    return { logged_in: this.puppet()?.isLoggedIn === true, alive: this.alive, ding_ms: this.dingMs }
  }

  /** Starts a probe unless one is running; resolves when that probe completes. Never rejects. */
  probe(): Promise<void> {
    if (this.stopped) return Promise.resolve()
    this.running ??= this.runProbe().finally(() => {
      this.running = undefined
    })
    return this.running
  }

  /** Ends the running probe (recording nothing) and refuses new ones. */
  stop(): void {
    this.stopped = true
    this.cancel?.()
  }

  private puppet(): PuppetLike | undefined {
    try {
      return this.options.bot.puppet as unknown as PuppetLike
    } catch {
      return undefined // NOPUPPET: the bot was never started
    }
  }

  private runProbe(): Promise<void> {
    const { timeoutMs } = this.options
    const puppet = this.puppet()
    if (puppet === undefined) {
      this.record(false, null, 'the bot has no puppet yet')
      return Promise.resolve()
    }
    const data = `metapuppet-liveness-${randomUUID()}`
    const started = performance.now()
    this.stats.probes++
    return new Promise<void>((resolve) => {
      let done = false
      const finish = (ok: boolean, why: string, record = true): void => {
        if (done) return
        done = true
        clearTimeout(timer)
        this.cancel = undefined
        puppet.off('dong', onDong)
        if (record && !this.stopped) this.record(ok, ok ? Math.round(performance.now() - started) : null, why)
        resolve()
      }
      const onDong = (payload: { data?: unknown }): void => {
        if (payload?.data === data) finish(true, '')
      }
      const timer = setTimeout(() => finish(false, `no dong within ${timeoutMs} ms`), timeoutMs)
      this.cancel = () => finish(false, '', false)
      puppet.on('dong', onDong)
      try {
        const result = puppet.ding(data)
        if (result instanceof Promise) result.catch((e: unknown) => finish(false, `ding failed: ${errorText(e)}`))
      } catch (e) {
        finish(false, `ding failed: ${errorText(e)}`)
      }
    })
  }

  private record(ok: boolean, dingMs: number | null, why: string): void {
    const { log, timeoutMs } = this.options
    if (!ok) this.stats.failures++
    if (this.alive && !ok) {
      log.warn('the Wechaty puppet did not answer a ding (%s): the bot may be stalled (probe timeout %d ms)', why, timeoutMs)
    } else if (!this.alive && ok) {
      log.info('the Wechaty puppet answers again (ding %d ms)', dingMs)
    }
    this.alive = ok
    this.dingMs = dingMs
  }
}

function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e)
}
