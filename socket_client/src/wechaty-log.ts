/**
 * Wechaty's own log lines (brolog, shared by wechaty, wechaty-puppet and the puppets) go
 * through this client's logger: one format on stderr, and redacted like every other line
 * (puppet-service errors quote the token).
 *
 * Which lines appear is still decided by Wechaty's level (`WECHATY_LOG`, warn by default,
 * see quietWechatyLogs in puppet.ts).
 */
import { log as wechatyLog } from 'wechaty'
import type { Level, Logger } from './log.js'

const LEVELS: Record<string, Level> = { ERR: 'error', WARN: 'warn', INFO: 'info', VERB: 'debug', SILL: 'debug' }

/** `09:58:41 WARN GrpcManager initClient() …` → `GrpcManager initClient() …` */
export function wechatyLine(levelTitle: string, text: string): { level: Level; line: string } {
  const level = LEVELS[levelTitle] ?? 'info'
  const line = text.replace(/^\d{2}:\d{2}:\d{2} /, '').replace(new RegExp(`^${levelTitle} `), '')
  return { level, line }
}

/** Sends every line Wechaty prints to `log`, as `wechaty: <line>`. */
export function routeWechatyLogs(log: Logger): void {
  wechatyLog.enableLogging((levelTitle: string, text?: string) => {
    const { level, line } = wechatyLine(levelTitle, text ?? '')
    log[level]('wechaty: %s', line)
  })
}
