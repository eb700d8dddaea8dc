/**
 * The QR login state machine.
 *
 * get_bot_qrcode → show it (Wechaty `scan`, status Waiting) → long-poll get_qrcode_status until
 * `confirmed`. Every state of the service is handled:
 *
 * | state | what happens |
 * | --- | --- |
 * | `wait` (or a poll that timed out) | poll again |
 * | `scaned` | `scan` Scanned, once per QR code |
 * | `scaned_but_redirect` | keep polling at `redirect_host`, with base_url's scheme |
 * | `need_verifycode` | `scan` Scanned (data `need_verifycode`); wait for a pairing code, send it with the next poll |
 * | `verify_code_blocked` | `scan` Cancel; fetch a new QR code |
 * | `expired` | `scan` Timeout (no QR code: the old one is useless); fetch a new QR code |
 * | `binded_redirect` | return "already bound" (the caller resumes saved credentials or starts over) |
 * | `confirmed` | return the bot token and ids |
 *
 * Failing calls are retried with capped, jittered backoff; two requests are never closer than
 * `pollIntervalMs`. It runs until confirmed or `signal` aborts (then it throws `aborted`).
 */
import { types } from 'wechaty-puppet'
import type { Logger } from '../../log.js'
import type { CallOptions, JsonObject, QrCode } from './api.js'
import { ILinkError, isAbort } from './errors.js'
import { sleep as defaultSleep } from './timing.js'

export type QrState =
  | 'wait'
  | 'scaned'
  | 'confirmed'
  | 'expired'
  | 'scaned_but_redirect'
  | 'need_verifycode'
  | 'verify_code_blocked'
  | 'binded_redirect'

export interface LoginApi {
  getBotQrcode(options: CallOptions): Promise<QrCode>
  getQrcodeStatus(baseUrl: string, qrcode: string, verifyCode: string | null, options: CallOptions): Promise<JsonObject>
}

export interface LoginCallbacks {
  /** Shows a QR code (status Waiting) or reports the state of the current one. `qrcode` is "" when only the status changed. */
  scan(qrcode: string, status: types.ScanStatus, state: string): void
  /** A call failed (the caller rate-limits what it reports). */
  problem(error: unknown): void
  /** The calls work again after `failures` failures. */
  recovered(failures: number): void
}

export interface LoginOptions {
  api: LoginApi
  /** The configured base_url: QR codes are fetched there and polling starts there. */
  baseUrl: string
  callbacks: LoginCallbacks
  log: Logger
  /** Resolves with a pairing code the user typed, or null when none came within `waitMs`. */
  verifyCode(waitMs: number, signal: AbortSignal): Promise<string | null>
  /** Backoff before retry `attempt` of a failing call. */
  retryDelay(attempt: number): number
  /** Least time between two status polls (default 1000 ms). */
  pollIntervalMs?: number
  /** How long to wait for a pairing code before polling again (default 5000 ms). */
  verifyWaitMs?: number
  sleep?: (ms: number, signal: AbortSignal) => Promise<void>
  now?: () => number
}

export type LoginOutcome =
  | { kind: 'confirmed'; botToken: string; botId: string; userId: string | null; baseUrl: string | null }
  | { kind: 'already_bound' }

const HOST = /^[A-Za-z0-9.-]+(?::\d{1,5})?$|^\[[0-9A-Fa-f:.]+\](?::\d{1,5})?$/

/** `baseurl` of a confirmed login, when it is a usable http(s) URL. */
function usableBase(value: unknown): string | null {
  if (typeof value !== 'string' || value.trim() === '') return null
  try {
    const url = new URL(value.trim())
    if (url.protocol !== 'http:' && url.protocol !== 'https:') return null
    return value.trim().replace(/\/+$/, '')
  } catch {
    return null
  }
}

export async function qrLogin(options: LoginOptions, signal: AbortSignal): Promise<LoginOutcome> {
  const { api, callbacks, log } = options
  const sleep = options.sleep ?? defaultSleep
  const now = options.now ?? Date.now
  const pollIntervalMs = options.pollIntervalMs ?? 1_000
  const verifyWaitMs = options.verifyWaitMs ?? 5_000
  const scheme = new URL(options.baseUrl).protocol

  let qr: QrCode | null = null
  let pollBase = options.baseUrl
  let lastState = ''
  let pendingCode: string | null = null
  let failures = 0
  const unknownStates = new Set<string>()

  const failed = async (error: unknown): Promise<void> => {
    if (isAbort(error)) throw error
    failures++
    callbacks.problem(error)
    await sleep(options.retryDelay(failures), signal)
  }
  const worked = (): void => {
    if (failures > 0) callbacks.recovered(failures)
    failures = 0
  }

  for (;;) {
    if (signal.aborted) throw new ILinkError('login stopped', { code: 'aborted', endpoint: 'login' })
    if (qr === null) {
      try {
        qr = await api.getBotQrcode({ signal })
      } catch (e) {
        await failed(e)
        continue
      }
      worked()
      pollBase = options.baseUrl
      lastState = 'wait'
      pendingCode = null
      callbacks.scan(qr.qrcode_img_content, types.ScanStatus.Waiting, 'wait')
    }

    const started = now()
    let answer: JsonObject
    const code = pendingCode
    try {
      pendingCode = null
      answer = await api.getQrcodeStatus(pollBase, qr.qrcode, code, { signal })
    } catch (e) {
      if (e instanceof ILinkError && e.code === 'timeout') {
        answer = { status: 'wait' } // a long poll that ran out means "still waiting"
      } else {
        await failed(e)
        continue
      }
    }
    worked()

    const state = typeof answer.status === 'string' ? answer.status : ''
    const changed = state !== lastState
    lastState = state
    switch (state) {
      case 'wait':
        break
      case 'scaned':
        if (changed) callbacks.scan('', types.ScanStatus.Scanned, 'scaned')
        break
      case 'scaned_but_redirect': {
        const host = answer.redirect_host
        if (typeof host === 'string' && HOST.test(host)) {
          const next = `${scheme}//${host}`
          if (next !== pollBase) log.info('ilink: QR login continues at %s (redirect)', host)
          pollBase = next
        } else {
          log.warn('ilink: QR status scaned_but_redirect without a usable redirect_host (%j); polling the same host', host)
        }
        if (changed) callbacks.scan('', types.ScanStatus.Scanned, 'scaned_but_redirect')
        break
      }
      case 'need_verifycode':
        if (!changed && code !== null) {
          log.warn('ilink: WeChat did not accept the pairing code; pass the code shown on the phone again')
          callbacks.scan('', types.ScanStatus.Scanned, 'need_verifycode')
        }
        if (changed) {
          log.warn(
            'ilink: WeChat asks for the pairing code shown on the phone: pass it to bot.puppet.metapuppetLoginCode(code) (from Python: an exec snippet)',
          )
          callbacks.scan('', types.ScanStatus.Scanned, 'need_verifycode')
        }
        pendingCode = await options.verifyCode(verifyWaitMs, signal)
        continue
      case 'verify_code_blocked':
        log.warn('ilink: too many wrong pairing codes; fetching a new QR code')
        callbacks.scan('', types.ScanStatus.Cancel, 'verify_code_blocked')
        qr = null
        break
      case 'expired':
        log.info('ilink: the QR code expired; fetching a new one')
        callbacks.scan('', types.ScanStatus.Timeout, 'expired')
        qr = null
        break
      case 'binded_redirect':
        return { kind: 'already_bound' }
      case 'confirmed': {
        const { bot_token: botToken, ilink_bot_id: botId, ilink_user_id: userId } = answer
        if (typeof botToken !== 'string' || botToken === '' || typeof botId !== 'string' || botId === '') {
          callbacks.problem(
            new ILinkError('get_qrcode_status: login confirmed without bot_token / ilink_bot_id; fetching a new QR code', {
              code: 'bad_response',
              endpoint: 'get_qrcode_status',
            }),
          )
          qr = null
          break
        }
        callbacks.scan('', types.ScanStatus.Confirmed, 'confirmed')
        return {
          kind: 'confirmed',
          botToken,
          botId,
          userId: typeof userId === 'string' && userId !== '' ? userId : null,
          baseUrl: usableBase(answer.baseurl),
        }
      }
      default:
        if (!unknownStates.has(state) && unknownStates.size < 20) {
          unknownStates.add(state)
          log.warn('ilink: unknown QR status %j; treated as wait', state.slice(0, 64))
        }
    }
    await sleep(Math.max(0, pollIntervalMs - (now() - started)), signal)
  }
}
