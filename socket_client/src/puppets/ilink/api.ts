/**
 * The iLink HTTP JSON client: one method per endpoint, nothing else.
 *
 * Every POST carries `Content-Type: application/json`, `AuthorizationType: ilink_bot_token`,
 * `Authorization: Bearer <token>` (once logged in), a fresh `X-WECHAT-UIN` (base64 of a random
 * uint32's decimal text), the app id / client version headers and `base_info` in the body.
 * An answer is a success only when it is HTTP 200, a JSON object, and neither `ret` nor
 * `errcode` is non-zero: anything else throws an ILinkError naming the endpoint and the code.
 * Answers are parsed with `parseJsonLossless` (ids stay exact strings) and capped in size.
 */
import { randomBytes } from 'node:crypto'
import { ILinkError, SEND_REFUSED, SESSION_EXPIRED } from './errors.js'
import { parseJsonLossless } from './json.js'

export type JsonObject = Record<string, unknown>

export interface ApiOptions {
  baseUrl: string
  botAgent: string
  channelVersion: string
  /** `iLink-App-Id` header; the official client sends "bot". */
  appId?: string
  /** Largest answer body accepted (default 32 MiB). */
  maxResponseBytes?: number
  /** Replaces the global fetch (tests). */
  fetch?: typeof fetch
}

export interface CallOptions {
  timeoutMs?: number
  signal?: AbortSignal
}

/** Default timeouts (ms), as the official client uses them. */
export const API_TIMEOUT_MS = 15_000
export const LIGHT_TIMEOUT_MS = 10_000
export const QR_POLL_TIMEOUT_MS = 35_000

const MAX_TEXT_IN_ERRORS = 200

export interface QrCode {
  qrcode: string
  qrcode_img_content: string
}

/** `iLink-App-ClientVersion`: 0x00MMNNPP of a "major.minor.patch" version. */
export function clientVersion(version: string): number {
  const [major = 0, minor = 0, patch = 0] = version.split('.').map((part) => Number.parseInt(part, 10) || 0)
  return ((major & 0xff) << 16) | ((minor & 0xff) << 8) | (patch & 0xff)
}

export function randomWechatUin(): string {
  return Buffer.from(String(randomBytes(4).readUInt32BE(0)), 'utf8').toString('base64')
}

function cut(text: string, max = MAX_TEXT_IN_ERRORS): string {
  return text.length <= max ? text : `${text.slice(0, max)}… (${text.length - max} more characters)`
}

export class ILinkApi {
  /** Where the API calls go; replaced by the `baseurl` a login returns. */
  baseUrl: string
  /** The bot token; null before login. Never logged. */
  token: string | null = null
  private readonly fetchImpl: typeof fetch
  private readonly maxResponseBytes: number
  private readonly appId: string

  constructor(private readonly options: ApiOptions) {
    this.baseUrl = options.baseUrl
    this.fetchImpl = options.fetch ?? fetch
    this.maxResponseBytes = options.maxResponseBytes ?? 32 * 1024 * 1024
    this.appId = options.appId ?? 'bot'
  }

  baseInfo(): JsonObject {
    return { channel_version: this.options.channelVersion, bot_agent: this.options.botAgent }
  }

  private commonHeaders(): Record<string, string> {
    return {
      'iLink-App-Id': this.appId,
      'iLink-App-ClientVersion': String(clientVersion(this.options.channelVersion)),
    }
  }

  /** POST `ilink/bot/<endpoint>` with `base_info` added; the checked answer. */
  async post(endpoint: string, body: JsonObject, options: CallOptions = {}): Promise<JsonObject> {
    const text = JSON.stringify({ ...body, base_info: this.baseInfo() })
    const headers: Record<string, string> = {
      'Content-Type': 'application/json',
      AuthorizationType: 'ilink_bot_token',
      'X-WECHAT-UIN': randomWechatUin(),
      ...this.commonHeaders(),
    }
    if (this.token !== null && this.token.trim() !== '') headers.Authorization = `Bearer ${this.token.trim()}`
    const url = new URL(`ilink/bot/${endpoint}`, `${this.baseUrl}/`)
    const answer = await this.request(endpoint, url, { method: 'POST', headers, body: text }, options)
    return checkAnswer(endpoint, answer)
  }

  /** GET `ilink/bot/<path>` on `baseUrl` (the QR endpoints); the checked answer. */
  async get(endpoint: string, path: string, options: CallOptions & { baseUrl?: string } = {}): Promise<JsonObject> {
    const url = new URL(`ilink/bot/${path}`, `${options.baseUrl ?? this.baseUrl}/`)
    const answer = await this.request(endpoint, url, { method: 'GET', headers: this.commonHeaders() }, options)
    return checkAnswer(endpoint, answer)
  }

  private async request(endpoint: string, url: URL, init: RequestInit, options: CallOptions): Promise<unknown> {
    const { text } = await this.fetchCapped(endpoint, url, init, options, this.maxResponseBytes)
    let parsed: unknown
    try {
      parsed = parseJsonLossless(text.toString('utf8'))
    } catch {
      // Broken JSON may still hold context tokens: only a non-JSON page (an HTML error page) is quoted.
      throw new ILinkError(`${endpoint}: the answer is not JSON: ${describeBody(text.toString('utf8'))}`, {
        code: 'bad_response',
        endpoint,
        httpStatus: 200,
      })
    }
    return parsed
  }

  /**
   * One HTTP exchange with a timeout, an optional outer abort signal and a body cap. Non-2xx is
   * an ILinkError `http_<status>`; a timeout is `timeout`; an outer abort is `aborted`.
   */
  async fetchCapped(
    endpoint: string,
    url: URL | string,
    init: RequestInit,
    options: CallOptions,
    maxBytes: number,
  ): Promise<{ text: Buffer; headers: Headers; status: number }> {
    const outer = options.signal
    if (outer?.aborted) throw new ILinkError(`${endpoint}: stopped`, { code: 'aborted', endpoint })
    const controller = new AbortController()
    let timedOut = false
    const timeoutMs = options.timeoutMs ?? API_TIMEOUT_MS
    const timer = setTimeout(() => {
      timedOut = true
      controller.abort()
    }, timeoutMs)
    const onAbort = (): void => controller.abort()
    outer?.addEventListener('abort', onAbort, { once: true })
    const failed = (e: unknown): ILinkError => {
      if (e instanceof ILinkError) return e
      if (outer?.aborted) return new ILinkError(`${endpoint}: stopped`, { code: 'aborted', endpoint })
      if (timedOut) {
        return new ILinkError(`${endpoint}: no answer within ${timeoutMs} ms`, { code: 'timeout', endpoint })
      }
      const cause = (e as { cause?: { code?: unknown; message?: unknown } }).cause
      const detail = typeof cause?.code === 'string' ? cause.code : typeof cause?.message === 'string' ? cause.message : e instanceof Error ? e.message : String(e)
      return new ILinkError(`${endpoint}: request to ${new URL(url).host} failed (${detail})`, { code: 'network', endpoint, cause: e })
    }
    try {
      let res: Response
      try {
        res = await this.fetchImpl(url, { ...init, signal: controller.signal })
      } catch (e) {
        throw failed(e)
      }
      let body: Buffer
      try {
        body = await readCapped(res, maxBytes, endpoint)
      } catch (e) {
        throw failed(e)
      }
      if (res.status < 200 || res.status > 299) {
        throw new ILinkError(
          `${endpoint}: HTTP ${res.status}${body.length > 0 ? `: ${describeBody(body.toString('utf8'))}` : ''}`,
          { code: `http_${res.status}`, endpoint, httpStatus: res.status },
        )
      }
      return { text: body, headers: res.headers, status: res.status }
    } finally {
      clearTimeout(timer)
      outer?.removeEventListener('abort', onAbort)
    }
  }

  /* ------------------------------------------------------------ endpoints */

  async getBotQrcode(options: CallOptions = {}): Promise<QrCode> {
    const answer = await this.get('get_bot_qrcode', 'get_bot_qrcode?bot_type=3', { timeoutMs: API_TIMEOUT_MS, ...options })
    const { qrcode, qrcode_img_content: image } = answer
    if (typeof qrcode !== 'string' || qrcode === '' || typeof image !== 'string' || image === '') {
      throw new ILinkError('get_bot_qrcode: the answer has no qrcode / qrcode_img_content string', {
        code: 'bad_response',
        endpoint: 'get_bot_qrcode',
      })
    }
    return { qrcode, qrcode_img_content: image }
  }

  getQrcodeStatus(baseUrl: string, qrcode: string, verifyCode: string | null, options: CallOptions = {}): Promise<JsonObject> {
    let path = `get_qrcode_status?qrcode=${encodeURIComponent(qrcode)}`
    if (verifyCode !== null) path += `&verify_code=${encodeURIComponent(verifyCode)}`
    return this.get('get_qrcode_status', path, { timeoutMs: QR_POLL_TIMEOUT_MS, ...options, baseUrl })
  }

  getUpdates(cursor: string, options: CallOptions): Promise<JsonObject> {
    return this.post('getupdates', { get_updates_buf: cursor }, options)
  }

  sendMessage(msg: JsonObject, options: CallOptions = {}): Promise<JsonObject> {
    return this.post('sendmessage', { msg }, options)
  }

  getUploadUrl(request: JsonObject, options: CallOptions = {}): Promise<JsonObject> {
    return this.post('getuploadurl', request, options)
  }

  getConfig(userId: string, contextToken: string | null, options: CallOptions = {}): Promise<JsonObject> {
    const body: JsonObject = { ilink_user_id: userId }
    if (contextToken !== null) body.context_token = contextToken
    return this.post('getconfig', body, { timeoutMs: LIGHT_TIMEOUT_MS, ...options })
  }

  sendTyping(userId: string, ticket: string, status: 1 | 2, options: CallOptions = {}): Promise<JsonObject> {
    return this.post('sendtyping', { ilink_user_id: userId, typing_ticket: ticket, status }, { timeoutMs: LIGHT_TIMEOUT_MS, ...options })
  }

  /** The notification the official client sends when it stops. */
  notifyStop(options: CallOptions = {}): Promise<JsonObject> {
    return this.post('msg/notifystop', {}, { timeoutMs: 3_000, ...options })
  }
}

async function readCapped(res: Response, maxBytes: number, endpoint: string): Promise<Buffer> {
  const declared = Number(res.headers.get('content-length') ?? NaN)
  const tooLarge = (): ILinkError =>
    new ILinkError(`${endpoint}: the answer is larger than the ${maxBytes}-byte cap`, { code: 'response_too_large', endpoint })
  if (Number.isFinite(declared) && declared > maxBytes) {
    await res.body?.cancel().catch(() => {})
    throw tooLarge()
  }
  if (res.body === null) return Buffer.alloc(0)
  const reader = res.body.getReader()
  const chunks: Uint8Array[] = []
  let total = 0
  for (;;) {
    const { done, value } = await reader.read()
    if (done) break
    total += value.byteLength
    if (total > maxBytes) {
      await reader.cancel().catch(() => {})
      throw tooLarge()
    }
    chunks.push(value)
  }
  return Buffer.concat(chunks, total)
}

/**
 * A server answer for an error text, without anything that could be a token: an HTML/text page
 * is quoted (cut), JSON only by its ret/errcode/errmsg, broken JSON only by its length.
 */
export function describeBody(body: string): string {
  if (!/^\s*[[{]/.test(body)) return JSON.stringify(cut(body, 120))
  try {
    const data: unknown = JSON.parse(body)
    if (typeof data === 'object' && data !== null && !Array.isArray(data)) {
      const { ret, errcode, errmsg } = data as JsonObject
      const fields = [`ret=${JSON.stringify(ret ?? null)}`, `errcode=${JSON.stringify(errcode ?? null)}`]
      if (typeof errmsg === 'string' && errmsg !== '') fields.push(`errmsg=${JSON.stringify(cut(errmsg, 120))}`)
      return `a JSON answer (${fields.join(' ')})`
    }
  } catch {
    // broken JSON: below
  }
  return `${body.length} characters of JSON that do not parse`
}

function codeOf(value: unknown): number | null | 'bad' {
  if (value === undefined || value === null) return null
  if (typeof value === 'number' && Number.isFinite(value)) return value
  if (typeof value === 'string' && /^-?\d+$/.test(value.trim())) return Number(value)
  return 'bad'
}

/** The answer as an object, or the ILinkError its `ret` / `errcode` mean. Exported for tests. */
export function checkAnswer(endpoint: string, answer: unknown): JsonObject {
  if (typeof answer !== 'object' || answer === null || Array.isArray(answer)) {
    throw new ILinkError(`${endpoint}: the answer is not a JSON object`, { code: 'bad_response', endpoint, httpStatus: 200 })
  }
  const obj = answer as JsonObject
  const ret = codeOf(obj.ret)
  const errcode = codeOf(obj.errcode)
  if (ret === 'bad' || errcode === 'bad') {
    throw new ILinkError(`${endpoint}: the answer's ret/errcode is not a number`, { code: 'bad_response', endpoint, httpStatus: 200 })
  }
  const code = errcode !== null && errcode !== 0 ? errcode : ret !== null && ret !== 0 ? ret : 0
  if (code === 0) return obj
  const errmsg = typeof obj.errmsg === 'string' && obj.errmsg !== '' ? ` errmsg=${JSON.stringify(cut(obj.errmsg))}` : ''
  const codes = `ret=${ret ?? 'none'} errcode=${errcode ?? 'none'}${errmsg}`
  let message: string
  if (code === SESSION_EXPIRED) {
    message = `${endpoint}: the iLink session expired (${codes}): the bot token is no longer valid and a new QR login is needed`
  } else if (code === SEND_REFUSED && endpoint === 'sendmessage') {
    message = `sendmessage refused (${codes}): the send window to this user is closed; only a new message from the user reopens it (not retried)`
  } else {
    message = `${endpoint} failed (${codes})`
  }
  throw new ILinkError(message, { code, endpoint, httpStatus: 200 })
}
