/**
 * Rate-limited error reporting.
 *
 * A failing endpoint retried with backoff must not turn into one Wechaty `error` event (and one
 * Python log line) per retry. Per key (e.g. "getupdates"): the first failure of a streak and
 * every change of what fails are reported at once; repeats of the same failure at most once per
 * `intervalMs`, with the count since the last report; recovery is one info line with the total.
 */
import type { Logger } from '../../log.js'
import { describeError } from './errors.js'

interface Streak {
  signature: string
  total: number
  sinceReport: number
  reportedAt: number
}

export interface ErrorReporterOptions {
  /** Receives each reported error (the puppet emits Wechaty `error`). */
  emit: (error: Error) => void
  log: Logger
  intervalMs?: number
  now?: () => number
}

export class ErrorReporter {
  /** Errors passed to `emit`, for tests and diagnostics. */
  emitted = 0
  private readonly streaks = new Map<string, Streak>()
  private readonly intervalMs: number
  private readonly now: () => number

  constructor(private readonly options: ErrorReporterOptions) {
    this.intervalMs = options.intervalMs ?? 60_000
    this.now = options.now ?? Date.now
  }

  /** One failure of `key`. `signature` groups failures that count as "the same" (default: code and message). */
  failure(key: string, error: unknown, signature?: string): void {
    const code = (error as { code?: unknown } | null)?.code
    const sig = signature ?? `${String(code ?? '')}|${describeError(error)}`
    const now = this.now()
    const streak = this.streaks.get(key)
    if (streak === undefined || streak.signature !== sig) {
      const before = streak === undefined ? 0 : streak.total
      this.streaks.set(key, { signature: sig, total: before + 1, sinceReport: 0, reportedAt: now })
      this.report(key, error, null)
      return
    }
    streak.total++
    streak.sinceReport++
    if (now - streak.reportedAt >= this.intervalMs) {
      const repeats = streak.sinceReport
      streak.sinceReport = 0
      streak.reportedAt = now
      this.report(key, error, repeats)
    }
  }

  /** `key` works again; logs how many failures the streak had. */
  recovered(key: string): void {
    const streak = this.streaks.get(key)
    if (streak === undefined) return
    this.streaks.delete(key)
    this.options.log.info('ilink: %s works again after %d failed attempts', key, streak.total)
  }

  /** Failures of `key` in the current streak (0 when it works). */
  failures(key: string): number {
    return this.streaks.get(key)?.total ?? 0
  }

  private report(key: string, error: unknown, repeats: number | null): void {
    const text = describeError(error)
    const suffix = repeats === null ? '' : ` (failed ${repeats} more times in the last ${Math.round(this.intervalMs / 1000)} s; still retrying)`
    // events.ts logs every Wechaty error at warn already; this line is for debugging only.
    this.options.log.debug('ilink: reported %s failure: %s%s', key, text, suffix)
    let reported: Error
    if (error instanceof Error) {
      reported = repeats === null ? error : Object.assign(new Error(`${error.message}${suffix}`), { name: error.name, code: (error as { code?: unknown }).code })
    } else {
      reported = new Error(`${text}${suffix}`)
    }
    this.emitted++
    try {
      this.options.emit(reported)
    } catch (e) {
      this.options.log.debug('ilink: error listener threw: %s', describeError(e))
    }
  }
}
