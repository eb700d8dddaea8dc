/**
 * The `control` channel: the server asks this client to act on its bot.
 *
 * `{action: "self-messages", on: boolean}`: forward the bot's own messages (the server wants
 * them: a listener, a web subscription, a robot that handles them), or not; answers `{ok: true}`.
 *
 * `{action: "restart-bot"}`: stop the Wechaty bot, start it again (under the mock, log the mock
 * user in again and wait for its `login`), then answer `{ok: true}`. A restart requested while
 * one runs joins it. Failures answer `{ok: false, error: {kind: "runtime", ...}}`, malformed or
 * unknown requests `{ok: false, error: {kind: "bad_request", ...}}`. `handle` never rejects.
 */
import type { Wechaty } from 'wechaty'
import { fromThrown } from './executor.js'
import type { Logger } from './log.js'
import type { MockKit } from './mockkit.js'
import { CONTROL_ACTIONS, type ControlResponse } from './protocol.js'

export interface ControlOptions {
  bot: Wechaty
  /** The MockKit under the mock puppet: its user is logged in again after a restart. */
  mock: MockKit | null
  log: Logger
  /** Limit for each of bot.stop(), bot.start() and (mock) the new login. Default 10 000 ms. */
  stepTimeoutMs?: number
  /** Told `self-messages` requests: whether to forward the bot's own messages. */
  selfMessages?: (on: boolean) => void
}

export class Control {
  /** Completed restarts (tests, diagnostics). */
  restarts = 0
  private restarting: Promise<void> | undefined

  constructor(private readonly options: ControlOptions) {}

  async handle(req: unknown): Promise<ControlResponse> {
    const action = typeof req === 'object' && req !== null ? (req as { action?: unknown }).action : undefined
    if (typeof action !== 'string' || !(CONTROL_ACTIONS as readonly string[]).includes(action)) {
      const got = typeof action === 'string' ? `action ${JSON.stringify(action.slice(0, 60))}` : 'no action'
      return {
        ok: false,
        error: {
          kind: 'bad_request',
          name: 'BadRequest',
          message: `control request must be {action: ${CONTROL_ACTIONS.map((a) => JSON.stringify(a)).join(' | ')}}; got ${got}`,
          stack: null,
        },
      }
    }
    if (action === 'self-messages') {
      const on = (req as { on?: unknown }).on
      if (typeof on !== 'boolean') {
        return { ok: false, error: { kind: 'bad_request', name: 'BadRequest', message: 'self-messages needs {on: true | false}', stack: null } }
      }
      this.options.selfMessages?.(on)
      return { ok: true }
    }
    try {
      await this.restartBot()
      return { ok: true }
    } catch (e) {
      return { ok: false, error: fromThrown('runtime', e) }
    }
  }

  /** Stops and starts the bot; concurrent calls share one restart. */
  restartBot(): Promise<void> {
    this.restarting ??= this.doRestart().finally(() => {
      this.restarting = undefined
    })
    return this.restarting
  }

  private async doRestart(): Promise<void> {
    const { bot, mock, log } = this.options
    const stepMs = this.options.stepTimeoutMs ?? 10_000
    log.info('control: restarting the bot')
    await within(bot.stop(), stepMs, 'bot.stop()')
    let login: Promise<void> | undefined
    if (mock !== null) {
      login = nextLogin(bot, stepMs)
      login.catch(() => {}) // awaited below; this only keeps an early failure from being "unhandled"
    }
    await within(bot.start(), stepMs, 'bot.start()')
    if (mock !== null) {
      mock.login()
      await login
    }
    this.restarts++
    log.info('control: bot restarted')
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

function nextLogin(bot: Wechaty, ms: number): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const onLogin = (): void => {
      clearTimeout(timer)
      resolve()
    }
    const timer = setTimeout(() => {
      bot.off('login', onLogin)
      reject(new Error(`the mock user did not log in again within ${ms} ms after bot.start()`))
    }, ms)
    bot.once('login', onLogin)
  })
}
