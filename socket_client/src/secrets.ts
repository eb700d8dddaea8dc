/**
 * Secrets this process knows (server tokens, the puppet-service token), and their redaction.
 *
 * Wechaty and its puppets put tokens into error texts (a wrong puppet-service token comes back
 * as `Invalid Wechaty TOKEN "<the token>"`), and those texts travel to Python's logs and event
 * feed. Every log line of this client (log.ts), Wechaty's own log lines (wechaty-log.ts), every
 * forwarded `error` event and every exec error pass through `redact`.
 */
import { format } from 'node:util'

/** What a secret is replaced with. */
export const REDACTED = '<redacted>'

/** Shorter strings are not treated as secrets: replacing them would garble ordinary text. */
const MIN_SECRET_LENGTH = 6

const secrets = new Set<string>()
let pattern: RegExp | null = null

/**
 * Registers a secret. For a puppet-service token `<prefix>_<secret>`, the part after the last
 * `_` is registered too (a server may echo only that part).
 */
export function addSecret(value: string | null | undefined): void {
  if (typeof value !== 'string') return
  const candidates = [value]
  const cut = value.lastIndexOf('_')
  if (cut > 0) candidates.push(value.slice(cut + 1))
  let changed = false
  for (const candidate of candidates) {
    if (candidate.length >= MIN_SECRET_LENGTH && !secrets.has(candidate)) {
      secrets.add(candidate)
      changed = true
    }
  }
  if (changed) {
    // Longest first, so a token is replaced whole before its suffix is looked for.
    const sorted = [...secrets].sort((a, b) => b.length - a.length)
    pattern = new RegExp(sorted.map(escapeRegExp).join('|'), 'g')
  }
}

/** Forgets every secret (tests). */
export function clearSecrets(): void {
  secrets.clear()
  pattern = null
}

/** `text` with every registered secret replaced by `<redacted>`. */
export function redact(text: string): string {
  if (pattern === null || text === '') return text
  pattern.lastIndex = 0
  return pattern.test(text) ? text.replace(pattern, REDACTED) : text
}

/** A copy of a JSON-like value with every string redacted (objects and arrays walked, depth-capped). */
export function redactDeep<T>(value: T, depth = 0): T {
  if (pattern === null) return value
  if (typeof value === 'string') return redact(value) as T
  if (depth > 20 || typeof value !== 'object' || value === null) return value
  if (Array.isArray(value)) return value.map((v: unknown) => redactDeep(v, depth + 1)) as T
  const out: Record<string, unknown> = {}
  for (const [key, v] of Object.entries(value as Record<string, unknown>)) out[key] = redactDeep(v, depth + 1)
  return out as T
}

/**
 * Redacts what goes through `console` too: some packages print straight to it (wechaty-token's
 * discovery errors quote the token's URL). Once per process; the QR code passes unchanged.
 */
export function redactConsole(target: Pick<Console, ConsoleMethod> = console): void {
  if (redactedConsoles.has(target)) return
  redactedConsoles.add(target)
  for (const method of CONSOLE_METHODS) {
    const original = target[method].bind(target)
    target[method] = (...args: unknown[]) => {
      if (pattern === null) original(...args)
      else original(redact(format(...args)))
    }
  }
}

const CONSOLE_METHODS = ['log', 'info', 'warn', 'error', 'debug'] as const
type ConsoleMethod = (typeof CONSOLE_METHODS)[number]
const redactedConsoles = new WeakSet<object>()

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')
}
