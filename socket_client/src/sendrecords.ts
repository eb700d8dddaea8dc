/**
 * Send records: the outcome of every send the server asked for, by its send id.
 *
 * The server gives every send a `send_id`, the same when a handler runs again after a crash
 * (`<event id>#<n>`). Before running a send this client looks its id up here: a completed one
 * is answered with the recorded outcome and not sent again, so a crash of either side
 * duplicates no reply. The records live in the outbox file (outbox.ts writes and replays
 * them, group-committed with the events), bounded by count (`maxRecords`, the oldest go
 * first) and by age (`maxAgeMs`).
 *
 * `SendRecordStore` is the interface; this in-memory map with its file lines is the one store
 * (another backend could keep them elsewhere).
 */
import type { Json, WireError } from './protocol.js'

/** What a send ended with: its result (a message id or null) or its error. */
export type SendOutcome = { ok: true; result: Json } | { ok: false; error: WireError }

export interface SendRecord {
  outcome: SendOutcome
  /** When it completed (ms since the epoch). */
  at: number
  /** Its line in the outbox file, newline included. */
  line: string
}

export interface SendRecordStore {
  get(sendId: string): SendOutcome | undefined
  set(sendId: string, outcome: SendOutcome, at?: number): SendRecord
  delete(sendId: string): void
  readonly size: number
}

export interface SendRecordOptions {
  maxRecords: number
  maxAgeMs: number
  now?: () => number
}

/*
 * A send that began and never reported back: the process died between the record that it starts
 * (written before the send, error name `SendStarted`) and the one of its outcome. It may or may
 * not have reached the chat; it is never sent again (a duplicate is worse than a reported gap, as
 * with the dialog journal's `once`), and it is reported once, as a `SendInterrupted` error event
 * (its record is renamed so).
 */

/** The outcome recorded before a send runs (`name` SendStarted; SendInterrupted once reported). */
export function startedOutcome(sendId: string, name: 'SendStarted' | 'SendInterrupted' = 'SendStarted'): SendOutcome {
  return {
    ok: false,
    error: {
      kind: 'runtime',
      name,
      message: `send ${sendId} was cut short by a crash of the Node client; it is not sent again (it may or may not have reached the chat)`,
      stack: null,
    },
  }
}

/** Whether `outcome` is the record of a send that began and has no outcome yet (before a crash). */
export function isStarted(outcome: SendOutcome | undefined): boolean {
  return outcome !== undefined && !outcome.ok && outcome.error.name === 'SendStarted'
}

/** The file line of a record: `{"d": id, "t": at, "r": result}` or `{..., "f": error}`. */
export function recordLine(sendId: string, outcome: SendOutcome, at: number): string {
  const body = outcome.ok ? { d: sendId, t: at, r: outcome.result } : { d: sendId, t: at, f: outcome.error }
  return `${JSON.stringify(body)}\n`
}

/** A replayed record line's fields, or null when the object is no record. */
export function parseRecord(record: Record<string, unknown>): { id: string; outcome: SendOutcome; at: number } | null {
  const { d, t, r, f } = record
  if (typeof d !== 'string' || d === '' || typeof t !== 'number') return null
  if (f !== undefined) {
    if (typeof f !== 'object' || f === null) return null
    return { id: d, outcome: { ok: false, error: f as WireError }, at: t }
  }
  return { id: d, outcome: { ok: true, result: (r ?? null) as Json }, at: t }
}

export class SendRecords implements SendRecordStore {
  /** Completed sends, oldest first. */
  private readonly records = new Map<string, SendRecord>()
  private recordBytes = 0
  private readonly now: () => number

  constructor(private readonly options: SendRecordOptions) {
    this.now = options.now ?? Date.now
  }

  get size(): number {
    return this.records.size
  }

  /** Bytes of the records' file lines. */
  get bytes(): number {
    return this.recordBytes
  }

  get(sendId: string): SendOutcome | undefined {
    const record = this.records.get(sendId)
    if (record === undefined) return undefined
    if (this.now() - record.at > this.options.maxAgeMs) return undefined
    return record.outcome
  }

  set(sendId: string, outcome: SendOutcome, at: number = this.now()): SendRecord {
    const old = this.records.get(sendId)
    if (old !== undefined) {
      this.records.delete(sendId)
      this.recordBytes -= Buffer.byteLength(old.line)
    }
    const line = recordLine(sendId, outcome, at)
    const record = { outcome, at, line }
    this.records.set(sendId, record)
    this.recordBytes += Buffer.byteLength(line)
    while (this.records.size > this.options.maxRecords) this.dropOldest()
    return record
  }

  /** Forgets a send (it failed before anything was sent: a handler run again may try again). */
  delete(sendId: string): void {
    const old = this.records.get(sendId)
    if (old === undefined) return
    this.records.delete(sendId)
    this.recordBytes -= Buffer.byteLength(old.line)
  }

  /** The ids of sends that began and have no outcome (a crash cut them short), oldest first. */
  started(): string[] {
    return [...this.records.entries()].filter(([, record]) => isStarted(record.outcome)).map(([id]) => id)
  }

  /** Drops records past the age bound (the oldest are first). */
  prune(): void {
    const limit = this.now() - this.options.maxAgeMs
    for (const [, record] of this.records) {
      if (record.at >= limit) break
      this.dropOldest()
    }
  }

  /** The file lines of the records kept, oldest first (for a compaction). */
  lines(): string[] {
    this.prune()
    return [...this.records.values()].map((record) => record.line)
  }

  private dropOldest(): void {
    const oldest = this.records.entries().next()
    if (oldest.done === true) return
    this.records.delete(oldest.value[0])
    this.recordBytes -= Buffer.byteLength(oldest.value[1].line)
  }
}
