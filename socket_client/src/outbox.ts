/**
 * Events the server has not acknowledged yet, in emission order, optionally persisted to a file;
 * with them the actions their acknowledgements carried and the records of completed sends.
 *
 * The file is an append-only JSONL log (the OS page cache outlives the process, so a SIGKILL
 * loses nothing written; no fsync):
 *
 *     {"e": <envelope>}                 an event was queued
 *     {"a": "<id>"}                     it left the outbox (acknowledged, rejected or dropped by the cap)
 *     {"a": "<id>", "x": [<action>]}    acknowledged with a reply: its actions are pending
 *     {"x": [<action>]}                 pending actions (written by a compaction)
 *     {"d": "<send id>", "t": ms, "f": {kind: "interrupted", name: "SendStarted"}}   a send begins
 *     {"d": "<send id>", "t": ms, "r": <result>} / {..., "f": <error>}   a send completed (sendrecords.ts)
 *     {"u": "<send id>"}               a send failed before anything was sent: forgotten
 *
 * With `groupCommit` the lines of one turn of the event loop are written together, in one
 * write, at `setImmediate`; `whenWritten(callback)` runs once what was queued so far is written
 * (the bridge sends an event, and runs the actions of an ack, only then). Without it every line
 * is written at once, synchronously.
 *
 * Loading replays the log; the pending events are those with an `e` line and no `a` line, the
 * pending actions those without a `d` line for their send id. Compaction rewrites the file with
 * only the pending `e` lines, the pending actions and the send records (temp file + rename,
 * atomic): at load, at close, and whenever the log grows past twice the live size (and
 * `compactMinBytes`). An unreadable line (a crash mid-write leaves a truncated last one) is
 * skipped with a warning.
 *
 * Caps: beyond `maxEvents` events or `maxBytes` bytes of JSON the oldest pending events are
 * dropped; each burst of drops is reported in one warning line with the count.
 *
 * A failing write (disk full, file too large, read-only folder) never loses an event by itself:
 * the event stays in memory (within the caps) and is marked *unsaved*. The failure is an error
 * line at once, a reminder with the count every `reminderMs`, and `onWriteError` (main.ts turns
 * it into an `error` event for the server). Every `retryMs` the file is rewritten from memory;
 * once that works the unsaved events are on disk again. `close()` says how many events it could
 * not save, so a stop never loses one without a word.
 *
 * Files are created 0600 in a 0700 folder (files.ts).
 */
import { closeSync, existsSync, readdirSync, readFileSync, renameSync, rmSync, writeSync } from 'node:fs'
import { basename, dirname, join } from 'node:path'
import { openPrivate, privateDir } from './files.js'
import type { Logger } from './log.js'
import { parseAction, type EventEnvelope, type TypedAction } from './protocol.js'
import { SendRecords, parseRecord, startedOutcome, type SendOutcome } from './sendrecords.js'

/** The file operations that write; replaceable in tests (e.g. to fail like a full disk). */
export interface OutboxFs {
  /** Opens the log for appending (created 0600). */
  openAppend(path: string): number
  /** Writes part of `buffer` from `offset`; returns how many bytes were written. */
  write(fd: number, buffer: Buffer, offset: number): number
  /** Writes a whole file (created 0600). */
  writeFile(path: string, body: string): void
  rename(from: string, to: string): void
}

export const realOutboxFs: OutboxFs = {
  openAppend: (path) => openPrivate(path, 'a'),
  write: (fd, buffer, offset) => writeSync(fd, buffer, offset),
  writeFile: (path, body) => {
    const fd = openPrivate(path, 'w')
    try {
      const buffer = Buffer.from(body)
      let offset = 0
      while (offset < buffer.length) offset += writeSync(fd, buffer, offset)
    } finally {
      closeSync(fd)
    }
  },
  rename: (from, to) => renameSync(from, to),
}

/** What `onWriteError` is told. */
export interface OutboxWriteFailure {
  path: string
  /** The error, e.g. `ENOSPC: no space left on device, write`. */
  error: string
  /** Events held in memory only, and their bytes. */
  unsaved: number
  unsavedBytes: number
}

export interface OutboxOptions {
  /** The JSONL file; null keeps the outbox in memory only. */
  path: string | null
  maxEvents: number
  maxBytes: number
  log: Logger
  /** The log is not compacted while smaller than this (default 1 MiB). */
  compactMinBytes?: number
  /** Drops within this window are reported in one warning line (default 5000 ms). */
  dropWarningIntervalMs?: number
  /** After a failed write, the file is rewritten from memory this often (default 5000 ms). */
  retryMs?: number
  /** While writes fail, an error line with the count of unsaved events this often (default 30 000 ms). */
  reminderMs?: number
  /** Called (once per failure streak, outside the failing call) when a write to the file fails. */
  onWriteError?: (failure: OutboxWriteFailure) => void
  fs?: OutboxFs
  /** Write the lines of one turn of the event loop together (default: each line at once). */
  groupCommit?: boolean
  /** Bounds of the send records (default 20 000 records, 24 h). */
  sendRecordsMax?: number
  sendRecordsMaxAgeMs?: number
}

export interface OutboxEntry {
  readonly envelope: EventEnvelope
  /** Size of its JSON line in the file, newline included. */
  readonly bytes: number
  /** Connection number this entry was last sent on; 0: not sent yet. Owned by the bridge. */
  sentOn: number
  /** When it was last sent (ms since the epoch). Owned by the bridge. */
  sentAt: number
  /** Not re-sent before the next reconnect (deferred by the server or past the ack timeout). Owned by the bridge. */
  parked: boolean
  /**
   * Times it was sent; an entry loaded from the file starts at 1 (a previous process may have
   * sent it). Owned by the bridge, which sends it as the envelope's `attempt`.
   */
  attempts: number
}

export class OutboxError extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'OutboxError'
  }
}

export class Outbox {
  /** Counters for tests and diagnostics. */
  readonly stats = { loaded: 0, dropped: 0, skippedLines: 0, compactions: 0, writeErrors: 0, writes: 0 }
  /** Completed sends by send id (persisted in this file). */
  readonly sends: SendRecords

  private readonly entries = new Map<string, OutboxEntry>()
  /** Actions of acknowledged events not done yet, by send id (typing has none: never pending). */
  private readonly actions = new Map<string, { action: TypedAction; line: string }>()
  private actionBytes = 0
  /** Lines queued for the next write (group commit), the ids of events among them, and what waits. */
  private buffer: string[] = []
  private bufferedIds: string[] = []
  private waiting: (() => void)[] = []
  private flushTimer: NodeJS.Immediate | undefined
  private readonly groupCommit: boolean
  private liveBytes = 0
  private fileBytes = 0
  private fd: number | null = null
  /** A write failed: the file no longer matches memory until a compaction succeeds. */
  private dirty = false
  private lastRepair = 0
  /** Ids of pending events whose line may not be in the file (written while it failed). */
  private readonly unsaved = new Set<string>()
  private lastError = ''
  private lastReminder = 0
  private retryTimer: NodeJS.Timeout | undefined
  private closed = false
  private droppedUnreported = 0
  private lastDropWarning = 0
  private dropTimer: NodeJS.Timeout | undefined
  private readonly compactMinBytes: number
  private readonly dropWarningIntervalMs: number
  private readonly retryMs: number
  private readonly reminderMs: number
  private readonly fs: OutboxFs

  constructor(private readonly options: OutboxOptions) {
    this.compactMinBytes = options.compactMinBytes ?? 1024 * 1024
    this.dropWarningIntervalMs = options.dropWarningIntervalMs ?? 5_000
    this.retryMs = options.retryMs ?? 5_000
    this.reminderMs = options.reminderMs ?? 30_000
    this.fs = options.fs ?? realOutboxFs
    this.groupCommit = options.groupCommit ?? false
    this.sends = new SendRecords({
      maxRecords: options.sendRecordsMax ?? 20_000,
      maxAgeMs: options.sendRecordsMaxAgeMs ?? 24 * 60 * 60 * 1000,
    })
    if (options.path !== null) this.load(options.path)
  }

  /** Pending events that are in memory only: the file could not be written when they came. */
  get unsavedCount(): number {
    return this.unsaved.size
  }

  /** True while the file does not match memory (a write failed and no rewrite worked since). */
  get failing(): boolean {
    return this.dirty
  }

  get path(): string | null {
    return this.options.path
  }

  get size(): number {
    return this.entries.size
  }

  /** The cap on the bytes of JSON held (`client.outbox_max_bytes`). */
  get maxBytes(): number {
    return this.options.maxBytes
  }

  /** Bytes of JSON held (the size of a compacted file). */
  get bytes(): number {
    return this.liveBytes
  }

  has(id: string): boolean {
    return this.entries.has(id)
  }

  get(id: string): OutboxEntry | undefined {
    return this.entries.get(id)
  }

  /** Pending entries, oldest first (a snapshot). */
  pending(): OutboxEntry[] {
    return [...this.entries.values()]
  }

  /**
   * Queues an event (a repeated id is ignored) and applies the caps; returns the entry, or
   * undefined if it did not fit. `json` is `JSON.stringify(envelope)` when the caller has it.
   */
  add(envelope: EventEnvelope, json: string = JSON.stringify(envelope)): OutboxEntry | undefined {
    const existing = this.entries.get(envelope.id)
    if (existing !== undefined) return existing
    const line = `{"e":${json}}\n`
    const entry: OutboxEntry = { envelope, bytes: Buffer.byteLength(line), sentOn: 0, sentAt: 0, parked: false, attempts: 0 }
    this.entries.set(envelope.id, entry)
    this.liveBytes += entry.bytes
    const persistent = this.options.path !== null && !this.closed
    if (persistent) this.unsaved.add(envelope.id)
    if (this.append(line, envelope.id) && persistent && !this.dirty) this.unsaved.delete(envelope.id)
    this.enforceCaps()
    return this.entries.get(envelope.id)
  }

  /**
   * Removes an acknowledged event and keeps the actions its acknowledgement carried as pending,
   * in one line (so a crash finds either the event or its actions). Says are pending until
   * `recordSend`; actions without a send id (typing) are not kept.
   */
  release(id: string, actions: readonly TypedAction[]): void {
    const says = actions.filter((a) => a.action === 'say' && this.sends.get(a.send_id) === undefined)
    if (says.length === 0) {
      this.remove(id)
      return
    }
    const entry = this.entries.get(id)
    if (entry !== undefined) {
      this.entries.delete(id)
      this.liveBytes -= entry.bytes
      this.unsaved.delete(id)
    }
    const line = `{"a":${JSON.stringify(id)},"x":${JSON.stringify(says)}}\n`
    this.keepActions(says)
    this.append(line)
    this.maybeCompact()
  }

  /** Actions of acknowledged events not done yet, oldest first. */
  pendingActions(): TypedAction[] {
    return [...this.actions.values()].map((pending) => pending.action)
  }

  /**
   * Records that a send begins (before it runs; its pending action is taken): should this process
   * die before `recordSend`, the send is in doubt and never made again (see sendrecords.ts).
   */
  beginSend(sendId: string): void {
    this.recordSend(sendId, startedOutcome(sendId))
  }

  /** Forgets a send that failed before anything was sent (a handler run again may try again). */
  forgetSend(sendId: string): void {
    if (this.sends.get(sendId) === undefined) return
    this.sends.delete(sendId)
    this.append(`${JSON.stringify({ u: sendId })}\n`)
  }

  /**
   * The sends a crash cut short (begun, no outcome), each reported once: they are recorded as
   * `SendInterrupted` from now on.
   */
  takeInterrupted(): string[] {
    const ids = this.sends.started()
    for (const id of ids) this.recordSend(id, startedOutcome(id, 'SendInterrupted'))
    return ids
  }

  /** Records a completed send (its pending action is done). */
  recordSend(sendId: string, outcome: SendOutcome): void {
    const pending = this.actions.get(sendId)
    if (pending !== undefined) {
      this.actions.delete(sendId)
      this.actionBytes -= Buffer.byteLength(pending.line)
    }
    const record = this.sends.set(sendId, outcome)
    this.append(record.line)
    this.maybeCompact()
  }

  /** Runs `callback` once every line queued so far is written (or its write failed). */
  whenWritten(callback: () => void): void {
    if (this.buffer.length === 0) callback()
    else this.waiting.push(callback)
  }

  /** Writes the queued lines now (group commit: otherwise at the next `setImmediate`). */
  flush(): void {
    if (this.flushTimer !== undefined) {
      clearImmediate(this.flushTimer)
      this.flushTimer = undefined
    }
    const lines = this.buffer
    const ids = this.bufferedIds
    const waiting = this.waiting
    this.buffer = []
    this.bufferedIds = []
    this.waiting = []
    if (lines.length > 0) {
      const written = this.writeLines(lines.join(''))
      if (written && !this.dirty) for (const id of ids) this.unsaved.delete(id)
    }
    for (const callback of waiting) callback()
  }

  private keepActions(actions: readonly TypedAction[]): void {
    for (const action of actions) {
      if (action.action !== 'say' || this.actions.has(action.send_id)) continue
      const line = `${JSON.stringify({ x: [action] })}\n`
      this.actions.set(action.send_id, { action, line })
      this.actionBytes += Buffer.byteLength(line)
    }
  }

  /** Size in bytes of the JSON line `add` would write for an envelope of `jsonBytes` bytes. */
  static lineBytes(jsonBytes: number): number {
    return jsonBytes + 7
  }

  /** Removes an event (acknowledged or rejected); unknown ids are ignored. */
  remove(id: string): void {
    if (!this.removeEntry(id)) return
    this.maybeCompact()
  }

  /** Rewrites the file with only the pending events (atomic). No-op without a file. */
  compact(): void {
    const path = this.options.path
    if (path === null || this.closed) return
    // the queued lines are in memory already: the rewrite takes them, the waiters run after it
    const waiting = this.waiting
    this.buffer = []
    this.bufferedIds = []
    this.waiting = []
    if (this.flushTimer !== undefined) {
      clearImmediate(this.flushTimer)
      this.flushTimer = undefined
    }
    const text = [...this.entries.values()].map((entry) => JSON.stringify({ e: entry.envelope })).join('\n')
    const records = this.sends.lines().join('') + [...this.actions.values()].map((a) => a.line).join('')
    const body = (text === '' ? '' : `${text}\n`) + records
    const tmp = `${path}.tmp-${process.pid}`
    try {
      this.closeFd()
      this.fs.writeFile(tmp, body)
      this.fs.rename(tmp, path)
      this.fileBytes = Buffer.byteLength(body)
      this.stats.compactions++
      if (this.dirty) {
        this.options.log.info(
          'outbox file %s is writable again: the %d events held in memory only are saved',
          path,
          this.unsaved.size,
        )
      }
      this.dirty = false
      this.unsaved.clear()
      clearInterval(this.retryTimer)
      this.retryTimer = undefined
    } catch (e) {
      try {
        rmSync(tmp, { force: true })
      } catch {
        // the temp file may not even exist
      }
      this.writeError(e)
    }
    this.openFd()
    for (const callback of waiting) callback()
  }

  /**
   * Reports pending drops, compacts the file and closes it; later changes stay in memory only.
   * Events it could not save (`unsavedCount` afterwards) are named in an error line: they are
   * lost with this process.
   */
  close(): void {
    this.reportDrops()
    this.flush()
    let lost = 0
    if (this.options.path !== null && !this.closed) {
      this.compact()
      this.closeFd()
      clearInterval(this.retryTimer)
      this.retryTimer = undefined
      lost = this.unsaved.size
      if (lost > 0) {
        const shown = [...this.unsaved].slice(0, 10).join(', ')
        this.options.log.error(
          'outbox: %d unacknowledged events could not be written to %s (%s) and are lost with this process: %s%s',
          lost,
          this.options.path,
          this.lastError,
          shown,
          lost > 10 ? ', ...' : '',
        )
      }
    }
    this.closed = true
  }

  private removeEntry(id: string): boolean {
    const entry = this.entries.get(id)
    if (entry === undefined) return false
    this.entries.delete(id)
    this.liveBytes -= entry.bytes
    this.unsaved.delete(id)
    const line = `{"a":${JSON.stringify(id)}}\n`
    this.append(line)
    return true
  }

  /** Bytes a compaction would write: pending events, pending actions, send records. */
  private get compactBytes(): number {
    return this.liveBytes + this.actionBytes + this.sends.bytes
  }

  private enforceCaps(): void {
    const { maxEvents, maxBytes } = this.options
    let dropped = 0
    while (this.entries.size > 0 && (this.entries.size > maxEvents || this.liveBytes > maxBytes)) {
      const oldest = this.entries.keys().next().value as string
      this.removeEntry(oldest)
      dropped++
    }
    if (dropped > 0) {
      this.stats.dropped += dropped
      this.droppedUnreported += dropped
      this.scheduleDropWarning()
      this.maybeCompact()
    }
  }

  /** One warning per burst: drops in the same tick (or within the warning interval) are summed. */
  private scheduleDropWarning(): void {
    if (this.dropTimer !== undefined) return
    const wait = Math.max(0, this.lastDropWarning + this.dropWarningIntervalMs - Date.now())
    this.dropTimer = setTimeout(() => this.reportDrops(), wait)
    this.dropTimer.unref()
  }

  private reportDrops(): void {
    clearTimeout(this.dropTimer)
    this.dropTimer = undefined
    if (this.droppedUnreported === 0) return
    const { maxEvents, maxBytes } = this.options
    this.options.log.warn(
      'outbox over its cap (%d events / %d bytes): dropped the %d oldest unacknowledged events; %d remain',
      maxEvents,
      maxBytes,
      this.droppedUnreported,
      this.entries.size,
    )
    this.droppedUnreported = 0
    this.lastDropWarning = Date.now()
  }

  private maybeCompact(): void {
    if (this.fd === null) return
    if (this.fileBytes > this.compactMinBytes && this.fileBytes > 2 * this.compactBytes) this.compact()
  }

  private load(path: string): void {
    const { log } = this.options
    try {
      privateDir(dirname(path))
    } catch (e) {
      throw new OutboxError(`cannot create the directory of client.outbox_path ${path}: ${errorText(e)}`)
    }
    // A compaction interrupted by a crash leaves its temp file behind; the log itself is intact.
    try {
      const prefix = `${basename(path)}.tmp-`
      for (const name of readdirSync(dirname(path))) {
        if (name.startsWith(prefix)) rmSync(join(dirname(path), name), { force: true })
      }
    } catch {
      // best effort
    }
    let text = ''
    if (existsSync(path)) {
      try {
        text = readFileSync(path, 'utf8')
      } catch (e) {
        throw new OutboxError(`cannot read the outbox file ${path} (client.outbox_path): ${errorText(e)}`)
      }
    }
    const lines = text.split('\n')
    // The last element is '' when the file ends with a newline; anything else is a truncated line.
    const tail = lines.pop() ?? ''
    let bad = 0
    for (const line of lines) {
      if (line.trim() === '') continue
      if (!this.replay(line)) bad++
    }
    if (bad > 0) log.warn('outbox file %s: skipped %d unreadable lines', path, bad)
    if (tail.trim() !== '' && !this.replay(tail)) {
      bad++
      log.warn('outbox file %s: skipped a truncated last line (%d bytes; the process probably died mid-write)', path, Buffer.byteLength(tail))
    }
    this.stats.skippedLines = bad
    this.stats.loaded = this.entries.size
    const before = this.entries.size
    const { maxEvents, maxBytes } = this.options
    let dropped = 0
    while (this.entries.size > 0 && (this.entries.size > maxEvents || this.liveBytes > maxBytes)) {
      const oldest = this.entries.keys().next().value as string
      const entry = this.entries.get(oldest)!
      this.entries.delete(oldest)
      this.liveBytes -= entry.bytes
      dropped++
    }
    if (dropped > 0) {
      this.stats.dropped += dropped
      log.warn('outbox file %s holds %d pending events, over the cap (%d events / %d bytes): dropped the %d oldest', path, before, maxEvents, maxBytes, dropped)
    }
    if (this.entries.size > 0) log.info('outbox: %d unacknowledged events loaded from %s; they are sent first', this.entries.size, path)
    if (this.actions.size > 0) log.info('outbox: %d sends of acknowledged events are not done yet; they run after the login', this.actions.size)
    this.compact()
    if (this.dirty) {
      throw new OutboxError(`cannot write the outbox file ${path} (client.outbox_path): check that its directory is writable`)
    }
  }

  /** Applies one log line; false when it is not a valid record. */
  private replay(line: string): boolean {
    let record: unknown
    try {
      record = JSON.parse(line)
    } catch {
      return false
    }
    if (typeof record !== 'object' || record === null) return false
    const { e, a, x, d, u } = record as { e?: unknown; a?: unknown; x?: unknown; d?: unknown; u?: unknown }
    if (typeof u === 'string') {
      this.sends.delete(u)
      return true
    }
    if (d !== undefined) {
      const done = parseRecord(record as Record<string, unknown>)
      if (done === null) return false
      const pending = this.actions.get(done.id)
      if (pending !== undefined) {
        this.actions.delete(done.id)
        this.actionBytes -= Buffer.byteLength(pending.line)
      }
      this.sends.set(done.id, done.outcome, done.at)
      return true
    }
    if (x !== undefined) {
      if (!Array.isArray(x)) return false
      const actions = x.map(parseAction).filter((action): action is TypedAction => typeof action !== 'string')
      this.keepActions(actions.filter((action) => action.action !== 'say' || this.sends.get(action.send_id) === undefined))
    }
    if (typeof a === 'string') {
      const entry = this.entries.get(a)
      if (entry !== undefined) {
        this.entries.delete(a)
        this.liveBytes -= entry.bytes
      }
      return true
    }
    if (x !== undefined) return true
    if (!isEnvelope(e)) return false
    if (!this.entries.has(e.id)) {
      const bytes = Buffer.byteLength(JSON.stringify({ e })) + 1
      this.entries.set(e.id, { envelope: e, bytes, sentOn: 0, sentAt: 0, parked: false, attempts: 1 })
      this.liveBytes += bytes
    }
    return true
  }

  /**
   * Appends one line (queued with `groupCommit`, else written at once); false when it is not (or
   * may not be) in the file. `eventId`: the event the line queues (unsaved until written).
   */
  private append(line: string, eventId?: string): boolean {
    if (this.options.path === null || this.closed) return true
    if (this.dirty || this.fd === null) {
      // Resynchronise the file with memory by rewriting it, at most every `retryMs`.
      if (Date.now() - this.lastRepair >= this.retryMs) {
        this.lastRepair = Date.now()
        this.compact()
        return !this.dirty // the rewrite took everything in memory, this line's event included
      }
      return false
    }
    this.buffer.push(line)
    if (eventId !== undefined) this.bufferedIds.push(eventId)
    if (!this.groupCommit) {
      this.flush()
      return !this.dirty
    }
    this.flushTimer ??= setImmediate(() => {
      this.flushTimer = undefined
      this.flush()
    })
    return false // not written yet: `flush` clears the event's unsaved mark
  }

  /** Writes `text` at the end of the file; false when it failed (then the file is dirty). */
  private writeLines(text: string): boolean {
    if (this.fd === null || this.dirty) {
      if (Date.now() - this.lastRepair >= this.retryMs) {
        this.lastRepair = Date.now()
        this.compact()
        return !this.dirty
      }
      return false
    }
    try {
      const buffer = Buffer.from(text)
      let offset = 0
      while (offset < buffer.length) offset += this.fs.write(this.fd, buffer, offset)
      this.fileBytes += buffer.length
      this.stats.writes++
      return true
    } catch (e) {
      // A partial line may be in the file now: nothing more is appended until a rewrite works.
      this.writeError(e)
      return false
    }
  }

  private openFd(): void {
    const path = this.options.path
    if (path === null || this.fd !== null) return
    try {
      this.fd = this.fs.openAppend(path)
    } catch (e) {
      this.writeError(e)
    }
  }

  private closeFd(): void {
    if (this.fd === null) return
    try {
      closeSync(this.fd)
    } catch {
      // already closed
    }
    this.fd = null
  }

  /**
   * An error line at the start of a failure streak and a reminder every `reminderMs`; the outbox
   * keeps the events in memory and rewrites the file every `retryMs` until it works.
   */
  private writeError(e: unknown): void {
    this.stats.writeErrors++
    this.lastError = errorText(e)
    const first = !this.dirty
    this.dirty = true
    const now = Date.now()
    const unsavedBytes = [...this.unsaved].reduce((sum, id) => sum + (this.entries.get(id)?.bytes ?? 0), 0)
    if (first || now - this.lastReminder >= this.reminderMs) {
      this.lastReminder = now
      this.options.log.error(
        'cannot write the outbox file %s: %s; %d unacknowledged events (%d bytes) are held in memory only, within the outbox caps, ' +
          'and are lost if this client stops before the file can be written again (retried every %d ms) or the server takes them',
        this.options.path,
        this.lastError,
        this.unsaved.size,
        unsavedBytes,
        this.retryMs,
      )
    }
    if (first) {
      const failure: OutboxWriteFailure = {
        path: this.options.path ?? '',
        error: this.lastError,
        unsaved: this.unsaved.size,
        unsavedBytes,
      }
      const notify = this.options.onWriteError
      if (notify !== undefined) queueMicrotask(() => notify(failure))
    }
    if (this.retryTimer === undefined && !this.closed) {
      this.retryTimer = setInterval(() => {
        if (this.closed || !this.dirty) return
        this.lastRepair = Date.now()
        this.compact()
      }, this.retryMs)
      this.retryTimer.unref()
    }
  }
}

function isEnvelope(value: unknown): value is EventEnvelope {
  if (typeof value !== 'object' || value === null) return false
  const { id, name, payload } = value as Record<string, unknown>
  return typeof id === 'string' && id !== '' && typeof name === 'string' && typeof payload === 'object' && payload !== null
}

function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e)
}
