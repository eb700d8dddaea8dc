/**
 * PuppetIlink: a Wechaty puppet for Tencent's official personal-account bot API ("iLink").
 *
 * Life cycle (all in the background of `start()`): saved credentials → log in at once; none →
 * QR login (Wechaty `scan`, then `login`). Then one long poll on getupdates turns WeChat
 * messages into Wechaty messages. A session expiry (-14 on any call) stops the calls, forgets
 * the token, emits `logout` with the reason and starts a new QR login. `stop()` ends the loop,
 * sends the stop notification and saves the cursor.
 *
 * MetaPuppet extras (duck-typed by the Node client and by Python snippets):
 * `metapuppetWithContext(messageId, fn)`, `metapuppetTyping(conversationId, on)`,
 * `metapuppetLoginCode(code)`, `metapuppetDelivered(messageId)`.
 */
import { randomUUID } from 'node:crypto'
import { extname } from 'node:path'
import { FileBox, type FileBoxInterface } from 'file-box'
import * as PUPPET from 'wechaty-puppet'
import { createLogger, rateLimitedLogger, type Logger } from '../../log.js'
import { ILinkApi, type JsonObject } from './api.js'
import { UPLOAD_MEDIA_TYPE, downloadMedia, uploadMedia, type UploadMediaType } from './cdn.js'
import { ContextTokens } from './context.js'
import { mediaKeyToWire } from './crypto.js'
import { ILinkError, SESSION_EXPIRED, describeError, isAbort, isSessionExpired } from './errors.js'
import { qrLogin } from './login.js'
import { LruMap } from './lru.js'
import { ITEM, displayName, parseWeixinMessage, type IlinkMessagePayload, type MediaRef } from './messages.js'
import type { IlinkOptions } from './options.js'
import { ErrorReporter } from './report.js'
import { IlinkStore, type Credentials } from './store.js'
import { retryDelay, sleep } from './timing.js'
import { UnsupportedIlinkApis } from './unsupported.js'
import { runUpdates } from './updates.js'

export const VERSION = '0.1.0'

export interface PuppetIlinkOptions extends PUPPET.PuppetOptions {
  ilink: IlinkOptions
  log?: Logger
  /** Replaces the global fetch (tests). */
  fetch?: typeof fetch
  /** Least time between QR status polls (default 1000 ms). */
  qrPollIntervalMs?: number
  /**
   * Move the cursor past a batch only once every message of it was handed on (the Node client's
   * events.ts calls `metapuppetDelivered(id)`), at most `deliveryTimeoutMs` (default 10 s).
   * Off by default: a puppet used without events.ts would wait for nothing.
   */
  waitForDelivery?: boolean
  deliveryTimeoutMs?: number
  /** Least time between two reports of the same failure (default 60 s). */
  errorReportIntervalMs?: number
}

/** Messages (payload + media reference) kept for payload lookups and on-demand downloads. */
export const MAX_MESSAGES = 5_000
/** WeChat message ids already emitted in this run (re-deliveries are dropped). */
export const MAX_SEEN = 20_000
export const MAX_CONTACTS = 10_000
const TYPING_TICKET_TTL_MS = 60 * 60 * 1000

interface StoredMessage {
  payload: IlinkMessagePayload | PUPPET.payloads.Message
  media: MediaRef | null
}

const IMAGE_EXT = new Set(['.jpg', '.jpeg', '.png', '.gif', '.webp', '.bmp', '.heic'])
const VIDEO_EXT = new Set(['.mp4', '.mov', '.m4v', '.avi', '.mkv', '.webm', '.3gp'])

/** How a file is sent: image, video or plain file (voice needs SILK, so audio goes as a file). */
export function uploadKindOf(name: string, mediaType: string | undefined): 'image' | 'video' | 'file' {
  const mime = (mediaType ?? '').toLowerCase()
  const ext = extname(name).toLowerCase()
  if (mime.startsWith('image/') || IMAGE_EXT.has(ext)) return 'image'
  if (mime.startsWith('video/') || VIDEO_EXT.has(ext)) return 'video'
  return 'file'
}

export class PuppetIlink extends UnsupportedIlinkApis {
  static override readonly VERSION = VERSION

  readonly api: ILinkApi
  readonly store: IlinkStore
  readonly tokens = new ContextTokens(MAX_MESSAGES)
  readonly reporter: ErrorReporter
  /** Counters for tests and diagnostics. */
  readonly stats = { batches: 0, emitted: 0, duplicates: 0, badMessages: 0, sent: 0, expiries: 0, notifyStops: 0 }

  private readonly ilink: IlinkOptions
  private readonly log: Logger
  private readonly problemLog: Logger
  private readonly messages = new LruMap<string, StoredMessage>(MAX_MESSAGES)
  private readonly seen = new LruMap<string, true>(MAX_SEEN)
  private readonly contacts = new LruMap<string, PUPPET.payloads.Contact>(MAX_CONTACTS)
  private readonly typingTickets = new Map<string, { ticket: string; at: number }>()
  private credentials: Credentials | null = null
  private cursor = ''
  private lifecycle: AbortController | null = null
  private session: AbortController | null = null
  private expiredBy: ILinkError | null = null
  private running: Promise<void> | null = null
  private codeWaiter: ((code: string) => void) | null = null
  private deliveryTracking = false
  private readonly deliveryWaiters = new Map<string, () => void>()

  constructor(options: PuppetIlinkOptions) {
    super(options)
    this.ilink = options.ilink
    this.log = options.log ?? createLogger('ilink')
    this.problemLog = rateLimitedLogger(this.log, { maxLines: 20, windowMs: 1_000 })
    this.api = new ILinkApi({
      baseUrl: this.ilink.baseUrl,
      botAgent: this.ilink.botAgent,
      channelVersion: this.ilink.channelVersion,
      fetch: options.fetch,
    })
    this.store = new IlinkStore(this.ilink.dataDir, this.log)
    this.deliveryTracking = options.waitForDelivery ?? false
    this.reporter = new ErrorReporter({
      emit: (error) => this.emit('error', error),
      log: this.log,
      intervalMs: options.errorReportIntervalMs,
    })
  }

  private get opts(): PuppetIlinkOptions {
    return this.options as PuppetIlinkOptions
  }

  override name(): string {
    return 'metapuppet-ilink'
  }

  override version(): string {
    return VERSION
  }

  /* ------------------------------------------------------------ life cycle */

  override async onStart(): Promise<void> {
    this.store.open()
    const lifecycle = new AbortController()
    this.lifecycle = lifecycle
    this.running = this.main(lifecycle.signal).catch((e: unknown) => {
      if (!isAbort(e)) {
        this.log.error('ilink: the puppet stopped working: %s', e instanceof Error ? e.stack ?? e.message : String(e))
        this.reporter.failure('puppet', e)
      }
    })
  }

  override async onStop(): Promise<void> {
    this.lifecycle?.abort()
    this.codeWaiter = null
    for (const release of this.deliveryWaiters.values()) release()
    this.deliveryWaiters.clear()
    if (this.running !== null) {
      const timer = new AbortController()
      await Promise.race([this.running, sleep(5_000, timer.signal).catch(() => {})])
      timer.abort() // no timer left behind to hold the process
      this.running = null
    }
    if (this.credentials !== null) {
      try {
        await this.api.notifyStop()
        this.stats.notifyStops++
      } catch (e) {
        this.log.debug('ilink: notifystop failed: %s', describeError(e))
      }
      this.persistCursor()
      this.persistTokens()
    }
    this.credentials = null
    this.session = null
  }

  private async main(signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      const credentials = this.store.loadCredentials() ?? (await this.qrLoginFlow(signal))
      if (signal.aborted) return
      const session = this.activate(credentials)
      const outcome = await runUpdates(
        {
          getUpdates: (cursor, options) => this.api.getUpdates(cursor, options),
          cursor: this.cursor,
          longPollTimeoutMs: this.ilink.longPollTimeoutMs,
          onBatch: (msgs, batchSignal) => this.onBatch(msgs, batchSignal),
          saveCursor: (cursor) => {
            this.cursor = cursor
            this.persistCursor()
          },
          problem: (error) => this.reporter.failure('getupdates', error),
          recovered: () => this.reporter.recovered('getupdates'),
          retryDelay: (attempt) => retryDelay(attempt, this.ilink.retryDelayMs, this.ilink.retryDelayMaxMs),
          log: this.log,
        },
        AbortSignal.any([signal, session.signal]),
      )
      if (signal.aborted) return
      const error =
        outcome.kind === 'expired'
          ? outcome.error
          : this.expiredBy ?? new ILinkError('the iLink session ended', { code: SESSION_EXPIRED, endpoint: 'getupdates' })
      await this.expire(error)
    }
  }

  /** Logs in with credentials: the API gets the token, the cursor and tokens are loaded, `login` is emitted. */
  private activate(credentials: Credentials): AbortController {
    this.credentials = credentials
    this.api.token = credentials.bot_token
    this.api.baseUrl = credentials.baseurl ?? this.ilink.baseUrl
    this.cursor = this.store.loadCursor(credentials.ilink_bot_id)
    this.tokens.load(this.store.loadContextTokens(credentials.ilink_bot_id))
    this.tokens.loadMessages(this.store.loadMessageTokens(credentials.ilink_bot_id))
    this.expiredBy = null
    const session = new AbortController()
    this.session = session
    this.contacts.set(credentials.ilink_bot_id, this.contactOf(credentials.ilink_bot_id))
    this.log.info(
      'ilink: logged in as bot %s%s; %s',
      credentials.ilink_bot_id,
      credentials.ilink_user_id === null ? '' : ` (owner ${credentials.ilink_user_id})`,
      this.cursor === '' ? 'no saved cursor (first poll with "")' : `resuming from the saved cursor (${this.cursor.length} characters)`,
    )
    this.login(credentials.ilink_bot_id)
    this.emit('ready', { data: 'ilink' })
    return session
  }

  private async qrLoginFlow(signal: AbortSignal): Promise<Credentials> {
    this.api.token = null
    for (;;) {
      const outcome = await qrLogin(
        {
          api: this.api,
          baseUrl: this.ilink.baseUrl,
          callbacks: {
            scan: (qrcode, status, state) => this.emit('scan', { qrcode, status, data: state }),
            problem: (error) => this.reporter.failure('login', error),
            recovered: () => this.reporter.recovered('login'),
          },
          log: this.log,
          verifyCode: (waitMs, codeSignal) => this.waitForCode(waitMs, codeSignal),
          retryDelay: (attempt) => retryDelay(attempt, this.ilink.retryDelayMs, this.ilink.retryDelayMaxMs),
          pollIntervalMs: this.opts.qrPollIntervalMs,
        },
        signal,
      )
      if (outcome.kind === 'confirmed') {
        const credentials: Credentials = {
          bot_token: outcome.botToken,
          ilink_bot_id: outcome.botId,
          ilink_user_id: outcome.userId,
          baseurl: outcome.baseUrl,
          saved_at: Date.now(),
        }
        this.store.saveCredentials(credentials)
        this.log.info('ilink: QR login confirmed; credentials saved in %s', this.store.path('credentials.json'))
        return credentials
      }
      const saved = this.store.loadCredentials()
      if (saved !== null) {
        this.log.info('ilink: WeChat says the account is already bound; using the saved credentials')
        return saved
      }
      this.reporter.failure(
        'login',
        new ILinkError(
          `WeChat answered binded_redirect (this WeChat account is already bound to a bot) but there are no saved credentials in ${this.store.dir}; unbind the bot in WeChat, then scan the new QR code`,
          { code: 'binded_redirect', endpoint: 'get_qrcode_status' },
        ),
      )
      await sleep(retryDelay(this.reporter.failures('login'), this.ilink.retryDelayMs, this.ilink.retryDelayMaxMs), signal)
    }
  }

  /** -14 anywhere: stop calling, forget the token, `logout` with the reason; main() then starts a new QR login. */
  private async expire(error: ILinkError): Promise<void> {
    this.stats.expiries++
    const botId = this.credentials?.ilink_bot_id ?? null
    this.persistCursor()
    this.credentials = null
    this.api.token = null
    this.session = null
    this.store.forgetCredentials()
    this.tokens.clear()
    this.store.forgetContextTokens()
    this.typingTickets.clear()
    const reason = `ilink session expired (${error.endpoint}: errcode -14): the bot token is no longer valid; scan the new QR code to log in again`
    this.log.warn('ilink: %s', reason)
    this.reporter.failure('session', new ILinkError(reason, { code: SESSION_EXPIRED, endpoint: error.endpoint }))
    if (this.isLoggedIn) await this.logout(reason)
    else if (botId !== null) this.log.debug('ilink: already logged out')
  }

  /** Called with any ILinkError of a call: a -14 ends the session (once). */
  private noteFailure(error: unknown): void {
    if (!isSessionExpired(error) || this.session === null || this.session.signal.aborted) return
    this.expiredBy = error as ILinkError
    this.session.abort()
  }

  private persistCursor(): void {
    const botId = this.credentials?.ilink_bot_id
    if (botId === undefined) return
    try {
      this.store.saveCursor(botId, this.cursor)
    } catch (e) {
      this.reporter.failure('store', new ILinkError(`cannot save the cursor in ${this.store.dir}: ${describeError(e)}`, { code: 'store', endpoint: 'cursor' }))
    }
  }

  private persistTokens(): void {
    const botId = this.credentials?.ilink_bot_id
    if (botId === undefined) return
    try {
      this.store.saveContextTokens(botId, this.tokens.snapshot(), this.tokens.messageSnapshot())
    } catch (e) {
      this.reporter.failure('store', new ILinkError(`cannot save the context tokens in ${this.store.dir}: ${describeError(e)}`, { code: 'store', endpoint: 'context tokens' }))
    }
  }

  /* ------------------------------------------------------------ receiving */

  private async onBatch(msgs: unknown[], signal: AbortSignal): Promise<void> {
    this.stats.batches++
    const botId = this.credentials?.ilink_bot_id ?? ''
    const emitted: string[] = []
    let tokensChanged = false
    for (const raw of msgs) {
      const result = parseWeixinMessage(raw, botId)
      if (!result.ok) {
        if (result.skip) this.log.debug('ilink: skipped %s', result.reason)
        else this.badMessage(`getupdates delivered ${result.error}; it is skipped`)
        continue
      }
      const message = result.message
      for (const problem of message.problems) this.badMessage(`message ${message.messageId} from ${message.fromUserId}: ${problem}`)
      if (!this.contacts.has(message.fromUserId)) this.contacts.set(message.fromUserId, this.contactOf(message.fromUserId))
      const ids = message.parts.map((part) => part.payload.id)
      if (message.contextToken !== null) {
        this.tokens.remember(message.fromUserId, message.contextToken, ids.length > 0 ? ids : [message.messageId], message.createTimeMs)
        tokensChanged = true
      }
      for (const part of message.parts) {
        const id = part.payload.id
        if (this.seen.has(id)) {
          this.stats.duplicates++
          this.log.debug('ilink: message %s delivered again; dropped', id)
          continue
        }
        this.seen.set(id, true)
        this.messages.set(id, part)
        emitted.push(id)
      }
    }
    if (tokensChanged) this.persistTokens()
    const delivered = this.deliveryTracking ? this.awaitDelivery(emitted, signal) : Promise.resolve()
    for (const id of emitted) {
      this.stats.emitted++
      this.emit('message', { messageId: id })
    }
    await delivered
  }

  private badMessage(text: string): void {
    this.stats.badMessages++
    this.problemLog.error('ilink: %s', text)
    this.reporter.failure('messages', new ILinkError(text, { code: 'bad_message', endpoint: 'getupdates' }), 'bad message')
  }

  private awaitDelivery(ids: string[], signal: AbortSignal): Promise<void> {
    if (ids.length === 0) return Promise.resolve()
    const timeoutMs = this.opts.deliveryTimeoutMs ?? 10_000
    const waits = ids.map(
      (id) =>
        new Promise<void>((resolve) => {
          this.deliveryWaiters.set(id, resolve)
        }),
    )
    return new Promise<void>((resolve) => {
      let done = false
      const finish = (timedOut: boolean): void => {
        if (done) return
        done = true
        clearTimeout(timer)
        signal.removeEventListener('abort', onAbort)
        const pending = ids.filter((id) => this.deliveryWaiters.has(id))
        for (const id of pending) this.deliveryWaiters.delete(id)
        if (timedOut && pending.length > 0) {
          this.log.warn('ilink: %d of %d messages were not forwarded within %d ms; the cursor moves on anyway', pending.length, ids.length, timeoutMs)
        }
        resolve()
      }
      const onAbort = (): void => finish(false)
      const timer = setTimeout(() => finish(true), timeoutMs)
      signal.addEventListener('abort', onAbort, { once: true })
      void Promise.all(waits).then(() => finish(false))
    })
  }

  /** The Node client calls this when the message event of `messageId` is in its outbox. */
  metapuppetDelivered(messageId: string): void {
    const release = this.deliveryWaiters.get(messageId)
    if (release === undefined) return
    this.deliveryWaiters.delete(messageId)
    release()
  }

  /* ------------------------------------------------------------ login helpers */

  /** Hands the pairing code WeChat asks for (`need_verifycode`) to the running QR login. */
  metapuppetLoginCode(code: string): boolean {
    if (typeof code !== 'string' || !/^\d{1,16}$/.test(code.trim())) {
      throw new ILinkError('a pairing code is 1 to 16 digits', { code: 'bad_argument', endpoint: 'login' })
    }
    const waiter = this.codeWaiter
    if (waiter === null) return false
    this.codeWaiter = null
    waiter(code.trim())
    return true
  }

  private waitForCode(waitMs: number, signal: AbortSignal): Promise<string | null> {
    return new Promise((resolve) => {
      const finish = (code: string | null): void => {
        clearTimeout(timer)
        signal.removeEventListener('abort', onAbort)
        if (this.codeWaiter === deliver) this.codeWaiter = null
        resolve(code)
      }
      const deliver = (code: string): void => finish(code)
      const onAbort = (): void => finish(null)
      const timer = setTimeout(() => finish(null), waitMs)
      signal.addEventListener('abort', onAbort, { once: true })
      this.codeWaiter = deliver
    })
  }

  override ding(data?: string): void {
    setImmediate(() => this.emit('dong', { data: data ?? '' }))
  }

  /* ------------------------------------------------------------ sending */

  /** Runs `fn` so that sends inside it answer `messageId` with that message's context token. */
  metapuppetWithContext<T>(messageId: string, fn: () => Promise<T>): Promise<T> {
    return this.tokens.withMessage(String(messageId), fn)
  }

  private requireSession(endpoint: string): Credentials {
    if (this.credentials === null || this.api.token === null || this.session === null || this.session.signal.aborted) {
      throw new ILinkError(`${endpoint}: the ilink bot is not logged in (waiting for a QR scan)`, { code: 'not_logged_in', endpoint })
    }
    return this.credentials
  }

  private async call<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return await fn()
    } catch (e) {
      this.noteFailure(e)
      throw e
    }
  }

  private async sendItem(toUserId: string, item: JsonObject, token: string, stored: PUPPET.payloads.Message): Promise<string> {
    const clientId = `metapuppet-${randomUUID()}`
    await this.call(() =>
      this.api.sendMessage({
        from_user_id: '',
        to_user_id: toUserId,
        client_id: clientId,
        message_type: 2,
        message_state: 2,
        item_list: [item],
        context_token: token,
      }),
    )
    this.stats.sent++
    this.messages.set(clientId, { payload: { ...stored, id: clientId }, media: null })
    return clientId
  }

  private outgoing(toUserId: string, type: PUPPET.types.Message, text: string, filename?: string): PUPPET.payloads.Message {
    const payload: PUPPET.payloads.Message = {
      id: '',
      type,
      text,
      talkerId: this.credentials?.ilink_bot_id ?? '',
      listenerId: toUserId,
      timestamp: Date.now(),
    }
    if (filename !== undefined) payload.filename = filename
    return payload
  }

  override async messageSendText(conversationId: string, text: string): Promise<string> {
    this.requireSession('sendmessage')
    const { token } = this.tokens.require(conversationId)
    return this.sendItem(conversationId, { type: ITEM.text, text_item: { text: String(text) } }, token, this.outgoing(conversationId, PUPPET.types.Message.Text, String(text)))
  }

  override async messageSendFile(conversationId: string, file: FileBoxInterface): Promise<string> {
    this.requireSession('sendmessage')
    const { token } = this.tokens.require(conversationId)
    const name = file.name || 'file'
    const max = this.ilink.maxFileBytes
    const tooLarge = (size: number): ILinkError =>
      new ILinkError(`${name} is ${size} bytes; the ilink puppet sends at most ${max} bytes (puppet.options.max_file_bytes)`, {
        code: 'file_too_large',
        endpoint: 'getuploadurl',
      })
    if (typeof file.size === 'number' && file.size > max) throw tooLarge(file.size)
    const data = await file.toBuffer()
    if (data.length > max) throw tooLarge(data.length)
    const kind = uploadKindOf(name, file.mediaType)
    const mediaType: UploadMediaType = UPLOAD_MEDIA_TYPE[kind]
    const uploaded = await this.call(() => uploadMedia(this.api, { data, mediaType, toUserId: conversationId }, { cdnBaseUrl: this.ilink.cdnBaseUrl }))
    const media = { encrypt_query_param: uploaded.encryptQueryParam, aes_key: mediaKeyToWire(uploaded.key), encrypt_type: 1 }
    if (kind === 'image') {
      return this.sendItem(conversationId, { type: ITEM.image, image_item: { media, mid_size: uploaded.cipherSize } }, token, this.outgoing(conversationId, PUPPET.types.Message.Image, '', name))
    }
    if (kind === 'video') {
      return this.sendItem(conversationId, { type: ITEM.video, video_item: { media, video_size: uploaded.cipherSize } }, token, this.outgoing(conversationId, PUPPET.types.Message.Video, '', name))
    }
    return this.sendItem(
      conversationId,
      { type: ITEM.file, file_item: { media, file_name: name, len: String(uploaded.rawSize) } },
      token,
      this.outgoing(conversationId, PUPPET.types.Message.Attachment, '', name),
    )
  }

  /** Starts (`on`) or stops the typing indicator in a chat; false when the channel could not do it right now. */
  async metapuppetTyping(conversationId: string, on: boolean): Promise<boolean> {
    if (this.credentials === null || this.api.token === null) return false
    try {
      let cached = this.typingTickets.get(conversationId)
      if (cached === undefined || Date.now() - cached.at > TYPING_TICKET_TTL_MS) {
        const chosen = this.tokens.choose(conversationId)
        const answer = await this.call(() => this.api.getConfig(conversationId, chosen?.token ?? null))
        const ticket = answer.typing_ticket
        if (typeof ticket !== 'string' || ticket === '') {
          this.log.debug('ilink: getconfig gave no typing_ticket for %s', conversationId)
          return false
        }
        cached = { ticket, at: Date.now() }
        this.typingTickets.set(conversationId, cached)
        if (this.typingTickets.size > MAX_CONTACTS) this.typingTickets.delete(this.typingTickets.keys().next().value as string)
      }
      await this.call(() => this.api.sendTyping(conversationId, cached!.ticket, on ? 1 : 2))
      this.reporter.recovered('typing')
      return true
    } catch (e) {
      this.typingTickets.delete(conversationId)
      if (!isSessionExpired(e)) this.reporter.failure('typing', e)
      return false
    }
  }

  /* ------------------------------------------------------------ messages */

  override async messageRawPayload(messageId: string): Promise<PUPPET.payloads.Message> {
    const stored = this.messages.get(messageId)
    if (stored === undefined) {
      throw new ILinkError(`message ${messageId} is not known to the ilink puppet (it keeps the latest ${MAX_MESSAGES} messages of this run)`, {
        code: 'unknown_message',
        endpoint: 'message',
      })
    }
    return stored.payload
  }

  override async messageRawPayloadParser(payload: PUPPET.payloads.Message): Promise<PUPPET.payloads.Message> {
    return payload
  }

  override async messageFile(messageId: string): Promise<FileBoxInterface> {
    const stored = this.messages.get(messageId)
    if (stored === undefined) await this.messageRawPayload(messageId) // throws the clear error
    const media = stored!.media
    if (media === null) {
      throw new ILinkError(`message ${messageId} has no file (it is not an image, voice, file or video message)`, { code: 'no_media', endpoint: 'message' })
    }
    const what = `${media.kind} of message ${messageId}`
    const data = await this.call(() =>
      downloadMedia(this.api, media, { cdnBaseUrl: this.ilink.cdnBaseUrl, maxBytes: this.ilink.maxFileBytes, what }),
    )
    return FileBox.fromBuffer(data, media.fileName)
  }

  override async messageImage(messageId: string, _imageType: PUPPET.types.Image): Promise<FileBoxInterface> {
    return this.messageFile(messageId)
  }

  override async conversationReadMark(_conversationId: string, _hasRead?: boolean): Promise<void> {
    // iLink has no read marks; nothing to do.
  }

  /* ------------------------------------------------------------ contacts */

  private contactOf(id: string): PUPPET.payloads.Contact {
    return {
      id,
      name: displayName(id),
      type: PUPPET.types.Contact.Individual,
      gender: PUPPET.types.ContactGender.Unknown,
      avatar: '',
      phone: [],
      friend: id !== this.credentials?.ilink_bot_id,
    }
  }

  override async contactRawPayload(contactId: string): Promise<PUPPET.payloads.Contact> {
    if (typeof contactId !== 'string' || contactId === '' || contactId.length > 256) {
      throw new ILinkError(`not an ilink user id: ${JSON.stringify(String(contactId).slice(0, 64))}`, { code: 'bad_argument', endpoint: 'contact' })
    }
    // iLink has no contact list and no profiles: any user id may be written to, named after its id.
    return this.contacts.get(contactId) ?? this.contactOf(contactId)
  }

  override async contactRawPayloadParser(payload: PUPPET.payloads.Contact): Promise<PUPPET.payloads.Contact> {
    return payload
  }
}
