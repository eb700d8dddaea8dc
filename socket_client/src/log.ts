/**
 * The one logger of the Node side: `[metapuppet <bot>] LEVEL message` on stderr.
 *
 * The level comes from METAPUPPET_LOG_LEVEL (debug|info|warn|error, default info). Every line
 * is redacted: no registered secret (secrets.ts) is ever written.
 */
import { format } from 'node:util'
import { redact } from './secrets.js'

export const LEVELS = ['debug', 'info', 'warn', 'error'] as const
export type Level = (typeof LEVELS)[number]

export interface Logger {
  readonly level: Level
  enabled(level: Level): boolean
  debug(...args: unknown[]): void
  info(...args: unknown[]): void
  warn(...args: unknown[]): void
  error(...args: unknown[]): void
}

export function levelFromEnv(env: NodeJS.ProcessEnv = process.env): Level {
  const raw = (env.METAPUPPET_LOG_LEVEL ?? '').trim().toLowerCase()
  return (LEVELS as readonly string[]).includes(raw) ? (raw as Level) : 'info'
}

export interface LoggerOptions {
  level?: Level
  /** Where lines go; stderr by default (stdout stays free for the QR code and tools). */
  write?: (line: string) => void
}

export function createLogger(bot: string, options: LoggerOptions = {}): Logger {
  const level = options.level ?? levelFromEnv()
  const write = options.write ?? ((line: string) => { process.stderr.write(line) })
  const threshold = LEVELS.indexOf(level)
  const prefix = `[metapuppet ${bot}]`
  const enabled = (l: Level): boolean => LEVELS.indexOf(l) >= threshold
  const emit = (l: Level, args: unknown[]): void => {
    if (!enabled(l)) return
    write(`${prefix} ${l.toUpperCase()} ${redact(format(...args))}\n`)
  }
  return {
    level,
    enabled,
    debug: (...args) => emit('debug', args),
    info: (...args) => emit('info', args),
    warn: (...args) => emit('warn', args),
    error: (...args) => emit('error', args),
  }
}

/** A logger that drops everything (tests). */
export const silentLogger: Logger = createLogger('silent', { level: 'error', write: () => {} })

export interface RateLimitOptions {
  /** Lines let through per window (default 100). */
  maxLines?: number
  /** Window length in ms (default 1000). */
  windowMs?: number
  /** Longer lines are cut, with the count of characters left out (default 8192). */
  maxLineLength?: number
}

export interface RateLimitedLogger extends Logger {
  /** Lines suppressed so far (all windows). */
  readonly suppressed: number
  /** Writes the pending "N log lines suppressed" line now, if any. */
  flush(): void
}

/**
 * A logger for untrusted callers (snippets): at most `maxLines` lines per window; the rest are
 * counted without being formatted and reported in one "N log lines suppressed" warning when
 * the window ends. Lines longer than `maxLineLength` characters are cut.
 */
export function rateLimitedLogger(base: Logger, options: RateLimitOptions = {}): RateLimitedLogger {
  const maxLines = options.maxLines ?? 100
  const windowMs = options.windowMs ?? 1000
  const maxLineLength = options.maxLineLength ?? 8192
  let windowStart = 0
  let count = 0
  let pending = 0
  let total = 0
  let timer: NodeJS.Timeout | undefined

  const flush = (): void => {
    clearTimeout(timer)
    timer = undefined
    if (pending === 0) return
    base.warn('%d log lines suppressed (snippet log limit: %d lines per %d ms)', pending, maxLines, windowMs)
    pending = 0
  }
  const emit = (level: Level, args: unknown[]): void => {
    if (!base.enabled(level)) return
    const now = Date.now()
    if (now - windowStart >= windowMs) {
      flush()
      windowStart = now
      count = 0
    }
    if (count >= maxLines) {
      pending++
      total++
      if (timer === undefined) {
        timer = setTimeout(flush, Math.max(1, windowStart + windowMs - now))
        timer.unref()
      }
      return
    }
    count++
    let line: string
    try {
      line = format(...args)
    } catch (e) {
      line = `<unprintable log arguments: ${e instanceof Error ? e.message : typeof e}>`
    }
    if (line.length > maxLineLength) {
      line = `${line.slice(0, maxLineLength)}… (${line.length - maxLineLength} more characters)`
    }
    base[level]('%s', line)
  }
  return {
    get level() {
      return base.level
    },
    enabled: (l) => base.enabled(l),
    debug: (...args) => emit('debug', args),
    info: (...args) => emit('info', args),
    warn: (...args) => emit('warn', args),
    error: (...args) => emit('error', args),
    get suppressed() {
      return total
    },
    flush,
  }
}
