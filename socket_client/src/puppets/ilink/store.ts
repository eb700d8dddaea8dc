/**
 * What the ilink puppet keeps on disk, in one private folder (0700, files 0600):
 *
 * - `credentials.json`: bot token and account ids, so a restart needs no new scan.
 * - `cursor.json`: the `get_updates_buf` of the account, so a restart neither loses nor repeats.
 * - `context-tokens.json`: each user's latest `context_token`, so replies survive a restart.
 *
 * Every write is atomic (a temp file, fsync, rename): a crash leaves the old file or the new one.
 * A damaged file is reported and treated as absent, never a crash.
 */
import { chmodSync, closeSync, fsyncSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeSync } from 'node:fs'
import { join } from 'node:path'
import { randomBytes } from 'node:crypto'
import type { Logger } from '../../log.js'

export interface Credentials {
  bot_token: string
  ilink_bot_id: string
  /** The WeChat user who scanned the QR code. */
  ilink_user_id: string | null
  /** API base the login answered with (null: the configured base_url). */
  baseurl: string | null
  saved_at: number
}

export interface ContextTokenEntry {
  token: string
  /** The Wechaty message id of the user message that brought the token. */
  messageId: string
  /** `create_time_ms` of that message. */
  createTimeMs: number
}

/** Most users whose latest context token is kept (least recent dropped first). */
export const MAX_CONTEXT_USERS = 10_000

export const FILES = {
  credentials: 'credentials.json',
  cursor: 'cursor.json',
  contextTokens: 'context-tokens.json',
} as const

export class IlinkStore {
  constructor(
    readonly dir: string,
    private readonly log: Logger,
  ) {}

  /** Creates the folder (0700), tightens loose modes, removes temp files a crash left behind. */
  open(): void {
    mkdirSync(this.dir, { recursive: true, mode: 0o700 })
    const mode = statSync(this.dir).mode & 0o777
    if (mode !== 0o700) chmodSync(this.dir, 0o700)
    for (const name of readdirSync(this.dir)) {
      if (name.includes('.tmp-')) rmSync(join(this.dir, name), { force: true })
      else if (name.endsWith('.json')) {
        const path = join(this.dir, name)
        if ((statSync(path).mode & 0o077) !== 0) chmodSync(path, 0o600)
      }
    }
  }

  loadCredentials(): Credentials | null {
    const data = this.read(FILES.credentials)
    if (data === null) return null
    const { bot_token: token, ilink_bot_id: botId, ilink_user_id: userId, baseurl, saved_at: savedAt } = data
    if (typeof token !== 'string' || token === '' || typeof botId !== 'string' || botId === '') {
      this.log.error('ilink: %s has no bot_token / ilink_bot_id; ignored (a new QR login is needed)', this.path(FILES.credentials))
      return null
    }
    return {
      bot_token: token,
      ilink_bot_id: botId,
      ilink_user_id: typeof userId === 'string' && userId !== '' ? userId : null,
      baseurl: typeof baseurl === 'string' && baseurl !== '' ? baseurl : null,
      saved_at: typeof savedAt === 'number' ? savedAt : 0,
    }
  }

  saveCredentials(credentials: Credentials): void {
    this.write(FILES.credentials, credentials)
  }

  forgetCredentials(): void {
    rmSync(this.path(FILES.credentials), { force: true })
  }

  /** The saved cursor of `botId`'s account; "" when none (or it belongs to another account). */
  loadCursor(botId: string): string {
    const data = this.read(FILES.cursor)
    if (data === null) return ''
    if (data.bot_id !== botId || typeof data.get_updates_buf !== 'string') return ''
    return data.get_updates_buf
  }

  saveCursor(botId: string, cursor: string): void {
    this.write(FILES.cursor, { bot_id: botId, get_updates_buf: cursor, saved_at: Date.now() })
  }

  loadContextTokens(botId: string): Map<string, ContextTokenEntry> {
    const result = new Map<string, ContextTokenEntry>()
    const data = this.read(FILES.contextTokens)
    if (data === null || data.bot_id !== botId) return result
    const users = data.users
    if (typeof users !== 'object' || users === null || Array.isArray(users)) return result
    for (const [userId, entry] of Object.entries(users as Record<string, unknown>)) {
      if (typeof entry !== 'object' || entry === null) continue
      const { token, messageId, createTimeMs } = entry as Record<string, unknown>
      if (typeof token !== 'string' || token === '') continue
      result.set(userId, {
        token,
        messageId: typeof messageId === 'string' ? messageId : '',
        createTimeMs: typeof createTimeMs === 'number' ? createTimeMs : 0,
      })
    }
    return result
  }

  saveContextTokens(
    botId: string,
    tokens: Map<string, ContextTokenEntry>,
    messages: ReadonlyArray<readonly [string, string, string]> = [],
  ): void {
    const entries = [...tokens.entries()].slice(-MAX_CONTEXT_USERS)
    this.write(FILES.contextTokens, {
      bot_id: botId,
      users: Object.fromEntries(entries),
      messages: messages.map((entry) => [...entry]),
      saved_at: Date.now(),
    })
  }

  /** The per-message tokens saved with the users' latest ones ([message id, user id, token]). */
  loadMessageTokens(botId: string): Array<[string, string, string]> {
    const data = this.read(FILES.contextTokens)
    if (data === null || data.bot_id !== botId || !Array.isArray(data.messages)) return []
    const result: Array<[string, string, string]> = []
    for (const entry of data.messages) {
      if (!Array.isArray(entry) || entry.length !== 3) continue
      const [id, userId, token] = entry as unknown[]
      if (typeof id === 'string' && typeof userId === 'string' && typeof token === 'string' && token !== '') {
        result.push([id, userId, token])
      }
    }
    return result
  }

  forgetContextTokens(): void {
    rmSync(this.path(FILES.contextTokens), { force: true })
  }

  path(name: string): string {
    return join(this.dir, name)
  }

  private read(name: string): Record<string, unknown> | null {
    const path = this.path(name)
    let text: string
    try {
      text = readFileSync(path, 'utf8')
    } catch (e) {
      if ((e as { code?: unknown }).code === 'ENOENT') return null
      this.log.error('ilink: cannot read %s: %s', path, e instanceof Error ? e.message : String(e))
      return null
    }
    try {
      const data: unknown = JSON.parse(text)
      if (typeof data === 'object' && data !== null && !Array.isArray(data)) return data as Record<string, unknown>
    } catch {
      // reported below
    }
    this.log.error('ilink: %s is not a JSON object (damaged?); ignored', path)
    return null
  }

  /** Atomic write: temp file (0600, exclusive), fsync, rename over the old one. */
  private write(name: string, data: unknown): void {
    const path = this.path(name)
    const temp = `${path}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`
    const fd = openSync(temp, 'wx', 0o600)
    try {
      const bytes = Buffer.from(JSON.stringify(data), 'utf8')
      let written = 0
      while (written < bytes.length) written += writeSync(fd, bytes, written, bytes.length - written)
      fsyncSync(fd)
    } catch (e) {
      closeSync(fd)
      rmSync(temp, { force: true })
      throw e
    }
    closeSync(fd)
    try {
      renameSync(temp, path)
    } catch (e) {
      rmSync(temp, { force: true })
      throw e
    }
  }
}
