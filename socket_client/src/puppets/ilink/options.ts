/**
 * `puppet.options` of the ilink puppet, validated with clear ConfigErrors.
 *
 * Unknown keys are refused (a typo would otherwise silently keep a default).
 */
import { isAbsolute, join, resolve } from 'node:path'
import { ConfigError } from '../../config.js'

export const DEFAULT_BASE_URL = 'https://ilinkai.weixin.qq.com'
export const DEFAULT_CDN_BASE_URL = 'https://novac2c.cdn.weixin.qq.com/c2c'
export const DEFAULT_LONG_POLL_TIMEOUT_MS = 35_000
export const DEFAULT_BOT_AGENT = 'MetaPuppet/0.1.0'
export const DEFAULT_CHANNEL_VERSION = '0.1.0'

/** The channel's send rule as MetaPuppet models it (the Python side enforces it). */
export interface SendBudget {
  /** The user must write before the bot may send. */
  user_first: boolean
  /** Bot messages allowed per user message. */
  per_user_message: number
  /** Seconds after the user's message during which the bot may answer it. */
  window_s: number
}

export interface IlinkOptions {
  baseUrl: string
  cdnBaseUrl: string
  /** Absolute folder for credentials, cursor and context tokens (0700). */
  dataDir: string
  longPollTimeoutMs: number
  botAgent: string
  channelVersion: string
  /** null (`send_budget: false`): no budget is modelled; replies travel in the event's ack. */
  sendBudget: SendBudget | null
  /** First and largest delay between retries of a failing call. */
  retryDelayMs: number
  retryDelayMaxMs: number
  /** Largest media file sent or downloaded. */
  maxFileBytes: number
}

export interface OptionContext {
  /** server.data_dir, absolute. */
  serverDataDir: string
  /** client.bot. */
  bot: string
  /** Folder relative paths are resolved against (the config file's, else the working one). */
  baseDir: string
}

const KNOWN = [
  'base_url',
  'cdn_base_url',
  'data_dir',
  'long_poll_timeout_ms',
  'bot_agent',
  'channel_version',
  'send_budget',
  'retry_delay_ms',
  'retry_delay_max_ms',
  'max_file_bytes',
] as const

export const DEFAULT_SEND_BUDGET: SendBudget = { user_first: true, per_user_message: 10, window_s: 86_400 }

/** A name safe as one path component (same rule as the Python side's file names). */
export function fileSafe(name: string): string {
  return name.replace(/[^A-Za-z0-9_.-]/g, '_').replace(/^\.+$/, '_') || 'bot'
}

export function parseIlinkOptions(raw: Record<string, unknown>, context: OptionContext): IlinkOptions {
  const fail = (key: string, expected: string, got: unknown): never => {
    throw new ConfigError(`puppet.options.${key} must be ${expected} (got ${JSON.stringify(got) ?? typeof got})`)
  }
  for (const key of Object.keys(raw)) {
    if (!(KNOWN as readonly string[]).includes(key)) {
      throw new ConfigError(`unknown ilink option puppet.options.${key} (known: ${KNOWN.join(', ')})`)
    }
  }
  const url = (key: string, fallback: string): string => {
    const value = raw[key]
    if (value === undefined || value === null) return fallback
    if (typeof value !== 'string' || value.trim() === '') return fail(key, 'an http(s) URL', value)
    let parsed: URL
    try {
      parsed = new URL(value)
    } catch {
      return fail(key, 'an http(s) URL', value)
    }
    if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') return fail(key, 'an http(s) URL', value)
    if (parsed.search !== '' || parsed.hash !== '') return fail(key, 'an http(s) URL without query or fragment', value)
    return value.replace(/\/+$/, '')
  }
  const int = (key: string, fallback: number, min: number, max: number, obj: Record<string, unknown> = raw, prefix = ''): number => {
    const value = obj[key]
    if (value === undefined || value === null) return fallback
    if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
      return fail(`${prefix}${key}`, `an integer between ${min} and ${max}`, value)
    }
    return value
  }
  const text = (key: string, fallback: string, max: number): string => {
    const value = raw[key]
    if (value === undefined || value === null) return fallback
    // eslint-disable-next-line no-control-regex
    if (typeof value !== 'string' || value.trim() === '' || value.length > max || !/^[\x20-\x7e]+$/.test(value)) {
      return fail(key, `a non-empty printable ASCII string of at most ${max} characters`, value)
    }
    return value.trim()
  }

  let dataDir = join(context.serverDataDir, 'ilink', fileSafe(context.bot))
  const rawDir = raw.data_dir
  if (rawDir !== undefined && rawDir !== null) {
    if (typeof rawDir !== 'string' || rawDir.trim() === '') fail('data_dir', 'a non-empty path', rawDir)
    dataDir = isAbsolute(rawDir as string) ? (rawDir as string) : resolve(context.baseDir, rawDir as string)
  }

  let budget: SendBudget | null = { ...DEFAULT_SEND_BUDGET }
  const rawBudget = raw.send_budget
  if (rawBudget === false) {
    // The account's budget is not modelled (a simulator, an account known to have none): the
    // Python side then checks no window and a refusal by WeChat is an `ActionFailed` error event.
    budget = null
  } else if (rawBudget !== undefined && rawBudget !== null) {
    if (typeof rawBudget !== 'object' || Array.isArray(rawBudget)) fail('send_budget', 'an object {user_first, per_user_message, window_s} or false', rawBudget)
    const b = rawBudget as Record<string, unknown>
    for (const key of Object.keys(b)) {
      if (!['user_first', 'per_user_message', 'window_s'].includes(key)) {
        throw new ConfigError(`unknown key puppet.options.send_budget.${key} (known: user_first, per_user_message, window_s)`)
      }
    }
    if (b.user_first !== undefined) {
      if (typeof b.user_first !== 'boolean') fail('send_budget.user_first', 'true or false', b.user_first)
      budget.user_first = b.user_first as boolean
    }
    budget.per_user_message = int('per_user_message', budget.per_user_message, 1, 100_000, b, 'send_budget.')
    budget.window_s = int('window_s', budget.window_s, 1, 366 * 86_400, b, 'send_budget.')
  }

  const retryDelayMs = int('retry_delay_ms', 1_000, 1, 600_000)
  const retryDelayMaxMs = Math.max(retryDelayMs, int('retry_delay_max_ms', 30_000, 1, 3_600_000))
  return {
    baseUrl: url('base_url', DEFAULT_BASE_URL),
    cdnBaseUrl: url('cdn_base_url', DEFAULT_CDN_BASE_URL),
    dataDir,
    longPollTimeoutMs: int('long_poll_timeout_ms', DEFAULT_LONG_POLL_TIMEOUT_MS, 1_000, 300_000),
    botAgent: text('bot_agent', DEFAULT_BOT_AGENT, 256),
    channelVersion: text('channel_version', DEFAULT_CHANNEL_VERSION, 64),
    sendBudget: budget,
    retryDelayMs,
    retryDelayMaxMs,
    maxFileBytes: int('max_file_bytes', 100 * 1024 * 1024, 1, 2 ** 31 - 1),
  }
}
