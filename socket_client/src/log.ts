/**
 * The one logger of the Node side: `[metapuppet <bot>] LEVEL message` on stderr.
 *
 * The level comes from METAPUPPET_LOG_LEVEL (debug|info|warn|error, default info).
 */
import { format } from 'node:util'

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
    write(`${prefix} ${l.toUpperCase()} ${format(...args)}\n`)
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
