/**
 * JSON parsing that never rounds an id.
 *
 * WeChat `message_id` (and other `*_id` fields) are uint64 on the wire and can exceed 2^53: a
 * plain `JSON.parse` rounds two different ids to one number, and a dedupe keyed on them drops a
 * message. `parseJsonLossless` quotes every number literal that is the value of a key named
 * `id` or ending in `_id` before parsing, so those values arrive as the exact decimal strings.
 * Everything else parses as `JSON.parse` would (malformed text throws its SyntaxError).
 */

/** Keys whose numeric values are kept as strings. */
export function isIdKey(key: string): boolean {
  return key === 'id' || key.endsWith('_id')
}

const QUOTE = 0x22
const BACKSLASH = 0x5c
const COLON = 0x3a
const MINUS = 0x2d
/** Keys longer than this are never id keys; their text is not copied. */
const MAX_KEY_LENGTH = 64

function isNumberChar(c: number): boolean {
  // digits, '-', '+', '.', 'e', 'E'
  return (c >= 0x30 && c <= 0x39) || c === MINUS || c === 0x2b || c === 0x2e || c === 0x65 || c === 0x45
}

function isSpace(c: number): boolean {
  return c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09
}

export function parseJsonLossless(text: string): unknown {
  return JSON.parse(quoteIdNumbers(text))
}

/** The text with every number value of an id key turned into a string literal. Exported for tests. */
export function quoteIdNumbers(text: string): string {
  const n = text.length
  const out: string[] = []
  let copied = 0
  let i = 0
  /** The last string literal, while it may still turn out to be a key. */
  let candidate: string | null = null
  /** The key whose value comes next (set by ':'). */
  let valueOf: string | null = null
  while (i < n) {
    const c = text.charCodeAt(i)
    if (c === QUOTE) {
      const start = i + 1
      let end = -1
      let from = start
      while (from <= n) {
        const q = text.indexOf('"', from)
        if (q < 0) break
        let backslashes = 0
        for (let b = q - 1; b >= start && text.charCodeAt(b) === BACKSLASH; b--) backslashes++
        if (backslashes % 2 === 0) {
          end = q
          break
        }
        from = q + 1
      }
      if (end < 0) return text // unterminated string: JSON.parse reports it
      candidate = end - start <= MAX_KEY_LENGTH ? text.slice(start, end) : null
      valueOf = null
      i = end + 1
      continue
    }
    if (c === COLON) {
      valueOf = candidate
      candidate = null
      i++
      continue
    }
    if ((c >= 0x30 && c <= 0x39) || c === MINUS) {
      let j = i + 1
      while (j < n && isNumberChar(text.charCodeAt(j))) j++
      if (valueOf !== null && isIdKey(valueOf)) {
        out.push(text.slice(copied, i), '"', text.slice(i, j), '"')
        copied = j
      }
      valueOf = null
      candidate = null
      i = j
      continue
    }
    if (!isSpace(c)) {
      valueOf = null
      candidate = null
    }
    i++
  }
  if (copied === 0) return text
  out.push(text.slice(copied))
  return out.join('')
}
