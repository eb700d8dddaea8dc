/**
 * Dead letters: events that can never be delivered (too large for the server's frame limit or
 * for the outbox), kept in a JSONL file instead of blocking every event behind them.
 *
 * One line per event: `{dead_at, reason, id, bot, name, ts, size, limit, envelope}`. The file is
 * bounded by `maxBytes` and `maxRecords`: the oldest records go first (the file is rewritten,
 * atomically). A record that alone is larger than `maxBytes` keeps everything but the envelope,
 * plus a `preview` of its JSON. Created 0600 in a 0700 folder.
 */
import { closeSync, existsSync, readFileSync, renameSync, rmSync, statSync, writeSync } from 'node:fs'
import { dirname } from 'node:path'
import { openPrivate, privateDir } from './files.js'
import type { Logger } from './log.js'
import type { EventEnvelope, JsonObject } from './protocol.js'

export const DEFAULT_DEAD_LETTER_MAX_BYTES = 128 * 1024 * 1024
export const DEFAULT_DEAD_LETTER_MAX_RECORDS = 1_000
/** Characters of an envelope's JSON kept in a record that cannot hold the whole envelope. */
export const PREVIEW_CHARS = 4_096

export type DeadLetterReason = 'too_large_for_server' | 'too_large_for_outbox'

export interface DeadLetter {
  reason: DeadLetterReason
  envelope: EventEnvelope
  /** `JSON.stringify(envelope)`, when the caller has it already. */
  json?: string
  /** Bytes the event takes on the wire (its encoded frame) or in the outbox. */
  size: number
  /** The limit it is over. */
  limit: number
}

export interface DeadLetterOptions {
  /** The JSONL file; null: dead letters are only logged. */
  path: string | null
  log: Logger
  maxBytes?: number
  maxRecords?: number
}

export class DeadLetters {
  readonly stats = { added: 0, summarised: 0, evicted: 0, writeErrors: 0 }
  private readonly maxBytes: number
  private readonly maxRecords: number

  constructor(private readonly options: DeadLetterOptions) {
    this.maxBytes = Math.max(1024, options.maxBytes ?? DEFAULT_DEAD_LETTER_MAX_BYTES)
    this.maxRecords = Math.max(1, options.maxRecords ?? DEFAULT_DEAD_LETTER_MAX_RECORDS)
  }

  get path(): string | null {
    return this.options.path
  }

  /** Stores one dead letter; returns the file it went to (null: not stored). Never throws. */
  add(letter: DeadLetter): string | null {
    this.stats.added++
    const path = this.options.path
    if (path === null) return null
    const { envelope } = letter
    const head: JsonObject = {
      dead_at: new Date().toISOString(),
      reason: letter.reason,
      id: envelope.id,
      bot: envelope.bot,
      name: envelope.name,
      ts: envelope.ts,
      size: letter.size,
      limit: letter.limit,
    }
    const json = letter.json ?? JSON.stringify(envelope)
    // The record is written in parts: no second copy of a large envelope's JSON is made.
    let parts = [`${JSON.stringify(head).slice(0, -1)},"envelope":`, json, '}\n']
    let bytes = parts.reduce((sum, part) => sum + Buffer.byteLength(part), 0)
    if (bytes > this.maxBytes) {
      this.stats.summarised++
      parts = [`${JSON.stringify({ ...head, envelope: null, preview: json.slice(0, PREVIEW_CHARS) })}\n`]
      bytes = Buffer.byteLength(parts[0]!)
    }
    try {
      privateDir(dirname(path))
      this.makeRoom(path, bytes)
      const fd = openPrivate(path, 'a')
      try {
        for (const part of parts) writeAll(fd, Buffer.from(part))
      } finally {
        closeSync(fd)
      }
      return path
    } catch (e) {
      this.stats.writeErrors++
      this.options.log.error('cannot write the dead letter of event %s to %s: %s', envelope.id, path, e instanceof Error ? e.message : String(e))
      return null
    }
  }

  /** Drops the oldest records so that one more of `bytes` fits both bounds. */
  private makeRoom(path: string, bytes: number): void {
    if (!existsSync(path)) return
    const size = statSync(path).size
    if (size + bytes <= this.maxBytes && size / 64 < this.maxRecords) {
      // Cheap path: a count is needed only when the file could hold maxRecords lines.
      return
    }
    const lines = readFileSync(path, 'utf8').split('\n').filter((l) => l !== '')
    let total = lines.reduce((sum, l) => sum + Buffer.byteLength(l) + 1, 0)
    let drop = 0
    while (drop < lines.length && (total + bytes > this.maxBytes || lines.length - drop + 1 > this.maxRecords)) {
      total -= Buffer.byteLength(lines[drop]!) + 1
      drop++
    }
    if (drop === 0) return
    this.stats.evicted += drop
    const kept = lines.slice(drop)
    const tmp = `${path}.tmp-${process.pid}`
    const fd = openPrivate(tmp, 'w')
    try {
      writeAll(fd, Buffer.from(kept.length === 0 ? '' : `${kept.join('\n')}\n`))
    } catch (e) {
      closeSync(fd)
      rmSync(tmp, { force: true })
      throw e
    }
    closeSync(fd)
    renameSync(tmp, path)
    this.options.log.warn('dead letters file %s is over its bounds (%d bytes / %d records): dropped the %d oldest records', path, this.maxBytes, this.maxRecords, drop)
  }
}

function writeAll(fd: number, buffer: Buffer): void {
  let offset = 0
  while (offset < buffer.length) offset += writeSync(fd, buffer, offset)
}
