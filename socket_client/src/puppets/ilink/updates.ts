/**
 * The receive loop: one long poll on `getupdates` at a time.
 *
 * - The request waits up to the server's suggested `longpolling_timeout_ms` (else the configured
 *   one); the client gives it 5 s more before calling it hung.
 * - A batch is handed to `onBatch` (which emits its messages and waits until they were
 *   forwarded) and only then is the new cursor saved: a crash re-reads the batch (duplicates are
 *   dropped by id downstream) instead of losing it.
 * - Failures back off (capped, jittered); a poll that comes back at once and empty waits a
 *   little, so a broken server never makes a tight loop.
 * - A cursor that is not a string or longer than `maxCursorBytes` is refused (reported; the old
 *   one is kept and the next poll waits a backoff step).
 * - errcode/ret -14 ends the loop with "expired"; the caller logs in again.
 */
import type { Logger } from '../../log.js'
import type { CallOptions, JsonObject } from './api.js'
import { ILinkError, isAbort, isSessionExpired } from './errors.js'
import { sleep as defaultSleep } from './timing.js'

export const LONG_POLL_GRACE_MS = 5_000
export const MAX_CURSOR_BYTES = 256 * 1024
/** Least time between two polls that came back empty. */
export const MIN_EMPTY_POLL_INTERVAL_MS = 500

export interface UpdatesOptions {
  getUpdates(cursor: string, options: CallOptions): Promise<JsonObject>
  cursor: string
  longPollTimeoutMs: number
  onBatch(msgs: unknown[], signal: AbortSignal): Promise<void>
  saveCursor(cursor: string): void
  /** A failed poll (the caller rate-limits what it reports). */
  problem(error: unknown): void
  recovered(failures: number): void
  retryDelay(attempt: number): number
  log: Logger
  maxCursorBytes?: number
  sleep?: (ms: number, signal: AbortSignal) => Promise<void>
  now?: () => number
}

export type UpdatesOutcome = { kind: 'stopped' } | { kind: 'expired'; error: ILinkError }

export async function runUpdates(options: UpdatesOptions, signal: AbortSignal): Promise<UpdatesOutcome> {
  const sleep = options.sleep ?? defaultSleep
  const now = options.now ?? Date.now
  const maxCursor = options.maxCursorBytes ?? MAX_CURSOR_BYTES
  let cursor = options.cursor
  let timeoutMs = options.longPollTimeoutMs
  let failures = 0
  let refusals = 0

  const stopped = (): UpdatesOutcome => ({ kind: 'stopped' })
  try {
    while (!signal.aborted) {
      const started = now()
      let answer: JsonObject
      try {
        answer = await options.getUpdates(cursor, { timeoutMs: timeoutMs + LONG_POLL_GRACE_MS, signal })
      } catch (e) {
        if (isAbort(e) || signal.aborted) return stopped()
        if (isSessionExpired(e)) return { kind: 'expired', error: e as ILinkError }
        failures++
        options.problem(e)
        await sleep(options.retryDelay(failures), signal)
        continue
      }

      const msgs = answer.msgs
      if (msgs !== undefined && msgs !== null && !Array.isArray(msgs)) {
        failures++
        options.problem(new ILinkError(`getupdates answered msgs of type ${typeof msgs} instead of a list; the batch is skipped`, { code: 'bad_response', endpoint: 'getupdates' }))
        await sleep(options.retryDelay(failures), signal)
        continue
      }
      if (failures > 0) options.recovered(failures)
      failures = 0

      const suggested = answer.longpolling_timeout_ms
      if (typeof suggested === 'number' && Number.isFinite(suggested) && suggested > 0) {
        timeoutMs = Math.min(300_000, Math.max(1_000, Math.round(suggested)))
      }

      let next: string | null = null
      const buf = answer.get_updates_buf
      if (typeof buf === 'string') {
        if (buf.length > maxCursor) {
          options.problem(new ILinkError(`getupdates answered a get_updates_buf of ${buf.length} characters (at most ${maxCursor}); refused, the previous cursor is kept`, { code: 'bad_response', endpoint: 'getupdates' }))
        } else if (buf !== '') {
          next = buf
        }
      } else if (buf !== undefined && buf !== null) {
        options.problem(new ILinkError(`getupdates answered a get_updates_buf of type ${typeof buf}; refused, the previous cursor is kept`, { code: 'bad_response', endpoint: 'getupdates' }))
      }
      const refused = typeof buf === 'string' ? buf.length > maxCursor : buf !== undefined && buf !== null

      const list = (msgs ?? []) as unknown[]
      if (list.length > 0) await options.onBatch(list, signal)
      if (next !== null && next !== cursor) {
        cursor = next
        try {
          options.saveCursor(cursor)
        } catch (e) {
          options.problem(new ILinkError(`cannot save the cursor: ${e instanceof Error ? e.message : String(e)}`, { code: 'store', endpoint: 'cursor' }))
        }
      }

      if (refused) {
        refusals++
        await sleep(options.retryDelay(refusals), signal)
        continue
      }
      refusals = 0
      const elapsed = now() - started
      if (list.length === 0 && elapsed < MIN_EMPTY_POLL_INTERVAL_MS) await sleep(MIN_EMPTY_POLL_INTERVAL_MS - elapsed, signal)
    }
  } catch (e) {
    if (isAbort(e) || signal.aborted) return stopped()
    throw e
  }
  return stopped()
}
