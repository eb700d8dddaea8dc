/**
 * A small fake iLink service for the puppet test (real HTTP on loopback, real AES-128-ECB).
 *
 * Not the protocol-faithful simulator (that is MetaPuppet.testing.ilink on the Python side):
 * just enough of the endpoints to drive the whole puppet, with knobs to make calls fail.
 */
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto'
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'

export interface SentMessage {
  to_user_id: string
  client_id: string
  context_token: string | undefined
  item_list: Record<string, unknown>[]
  authorization: string | undefined
}

export interface FakeUser {
  id: string
  /** Context tokens handed out with this user's messages. */
  tokens: string[]
}

interface Stored {
  seq: number
  /** Raw JSON text of the message (so ids can be bigger than 2^53). */
  json: string
}

export class FakeIlink {
  server: Server
  url = ''
  readonly token = `bot-token-${randomBytes(4).toString('hex')}`
  readonly botId = 'fakebot@im.bot'
  /** Every request as `METHOD path`. */
  readonly requests: string[] = []
  readonly sent: SentMessage[] = []
  readonly typing: { user: string; status: number; ticket: string }[] = []
  readonly uploads = new Map<string, { cipher: Buffer; aeskey: string; mediaType: number }>()
  notifyStops = 0
  /** Statuses get_qrcode_status answers, in order; then "wait". */
  readonly qrScript: Record<string, unknown>[] = []
  qrCount = 0
  /** Answer every call (but QR ones) with errcode -14 while true. */
  expired = false
  /** Next sendmessage answers ret = this (once), e.g. -2. */
  nextSendRet: number | null = null
  /** Endpoint → number of upcoming calls to answer with HTTP 500. */
  readonly failures = new Map<string, number>()
  /** Replace the next getupdates answer with this raw text (once). */
  rawUpdates: string[] = []
  longPollMs = 300
  private readonly messages: Stored[] = []
  private seq = 0
  private waiters: (() => void)[] = []
  private readonly media = new Map<string, Buffer>()

  constructor() {
    this.server = createServer((req, res) => {
      this.handle(req, res).catch((e: unknown) => {
        res.statusCode = 500
        res.end(String(e))
      })
    })
  }

  async start(): Promise<void> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve))
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`
  }

  async stop(): Promise<void> {
    for (const wake of this.waiters) wake()
    this.server.closeAllConnections()
    await new Promise<void>((resolve) => this.server.close(() => resolve()))
  }

  count(prefix: string): number {
    return this.requests.filter((r) => r.startsWith(prefix)).length
  }

  /** Queues a user message; `extra` is merged into the raw message; `rawId` is written as a JSON number. */
  userSays(user: FakeUser, items: Record<string, unknown>[], options: { rawId?: string; extra?: Record<string, unknown> } = {}): string {
    this.seq++
    const token = `ctx-${user.id}-${this.seq}`
    user.tokens.push(token)
    const id = options.rawId ?? String(7_000_000_000_000_000_000n + BigInt(this.seq))
    const body = {
      seq: this.seq,
      from_user_id: user.id,
      to_user_id: this.botId,
      create_time_ms: Date.now(),
      session_id: `s-${user.id}`,
      message_type: 1,
      message_state: 2,
      item_list: items,
      context_token: token,
      ...options.extra,
    }
    const json = JSON.stringify(body).replace(/^\{/, `{"message_id":${id},`)
    this.messages.push({ seq: this.seq, json })
    this.wake()
    return id
  }

  /** Queues a raw message text as is (hostile input). */
  pushRaw(json: string): void {
    this.seq++
    this.messages.push({ seq: this.seq, json })
    this.wake()
  }

  /** Stores a plaintext as encrypted CDN media; returns what a message item carries. */
  putMedia(plain: Buffer, keyForm: 'hex' | 'raw64' | 'hex64' = 'hex64'): { encrypt_query_param: string; aes_key: string; key: Buffer } {
    const key = randomBytes(16)
    const cipher = createCipheriv('aes-128-ecb', key, null)
    const data = Buffer.concat([cipher.update(plain), cipher.final()])
    const param = `dl-${randomBytes(6).toString('hex')}`
    this.media.set(param, data)
    const aes_key = keyForm === 'hex' ? key.toString('hex') : keyForm === 'raw64' ? key.toString('base64') : Buffer.from(key.toString('hex')).toString('base64')
    return { encrypt_query_param: param, aes_key, key }
  }

  /** Decrypts what the bot uploaded for a sent media item. */
  decryptSent(item: Record<string, unknown>): Buffer {
    const sub = (item.image_item ?? item.file_item ?? item.video_item) as { media: { encrypt_query_param: string; aes_key: string } }
    const cipherText = this.media.get(sub.media.encrypt_query_param)
    if (cipherText === undefined) throw new Error('no such upload')
    const hex = Buffer.from(sub.media.aes_key, 'base64').toString('ascii')
    const decipher = createDecipheriv('aes-128-ecb', Buffer.from(hex, 'hex'), null)
    return Buffer.concat([decipher.update(cipherText), decipher.final()])
  }

  private wake(): void {
    const waiters = this.waiters
    this.waiters = []
    for (const wake of waiters) wake()
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', this.url)
    const path = url.pathname
    this.requests.push(`${req.method} ${path}`)
    const chunks: Buffer[] = []
    for await (const chunk of req) chunks.push(chunk as Buffer)
    const raw = Buffer.concat(chunks)
    const json = (status: number, body: unknown): void => {
      res.statusCode = status
      res.setHeader('content-type', 'application/json')
      res.end(typeof body === 'string' ? body : JSON.stringify(body))
    }
    const endpoint = path.replace(/^\/ilink\/bot\//, '')
    const failing = this.failures.get(endpoint) ?? 0
    if (failing > 0) {
      this.failures.set(endpoint, failing - 1)
      return json(500, { error: 'injected' })
    }

    if (path === '/c2c/upload' && req.method === 'POST') {
      const param = url.searchParams.get('encrypted_query_param') ?? ''
      const reference = `dl-${param}`
      this.media.set(reference, raw)
      res.setHeader('x-encrypted-param', reference)
      return json(200, {})
    }
    if (path === '/c2c/download' && req.method === 'GET') {
      const data = this.media.get(url.searchParams.get('encrypted_query_param') ?? '')
      if (data === undefined) return json(404, { error: 'no such media' })
      res.statusCode = 200
      res.end(data)
      return
    }
    if (endpoint === 'get_bot_qrcode') {
      this.qrCount++
      return json(200, { qrcode: `qr-${this.qrCount}`, qrcode_img_content: `${this.url}/qr/${this.qrCount}` })
    }
    if (endpoint === 'get_qrcode_status') {
      const next = this.qrScript.shift()
      if (next === undefined) {
        await new Promise((resolve) => setTimeout(resolve, 50))
        return json(200, { status: 'wait' })
      }
      return json(200, next)
    }

    const body = raw.length > 0 ? (JSON.parse(raw.toString('utf8')) as Record<string, unknown>) : {}
    if (req.headers.authorization !== `Bearer ${this.token}` || this.expired) {
      return json(200, { ret: -14, errcode: -14, errmsg: 'session timeout' })
    }
    if (req.headers.authorizationtype !== 'ilink_bot_token' || typeof body.base_info !== 'object') {
      return json(400, { error: 'missing headers or base_info' })
    }
    switch (endpoint) {
      case 'getupdates': {
        const raw = this.rawUpdates.shift()
        if (raw !== undefined) return json(200, raw)
        const cursor = String(body.get_updates_buf ?? '')
        const after = cursor === '' ? 0 : Number(cursor.replace('cur-', ''))
        let pending = this.messages.filter((m) => m.seq > after)
        if (pending.length === 0) {
          await new Promise<void>((resolve) => {
            const timer = setTimeout(resolve, this.longPollMs)
            this.waiters.push(() => {
              clearTimeout(timer)
              resolve()
            })
          })
          pending = this.messages.filter((m) => m.seq > after)
        }
        const last = pending.length > 0 ? pending[pending.length - 1]!.seq : after
        const text = `{"ret":0,"msgs":[${pending.map((m) => m.json).join(',')}],"get_updates_buf":"cur-${last}","longpolling_timeout_ms":${this.longPollMs}}`
        return json(200, text)
      }
      case 'sendmessage': {
        const msg = body.msg as Record<string, unknown>
        this.sent.push({
          to_user_id: String(msg.to_user_id),
          client_id: String(msg.client_id),
          context_token: msg.context_token as string | undefined,
          item_list: msg.item_list as Record<string, unknown>[],
          authorization: req.headers.authorization,
        })
        if (this.nextSendRet !== null) {
          const ret = this.nextSendRet
          this.nextSendRet = null
          return json(200, { ret, errmsg: '' })
        }
        return json(200, { ret: 0 })
      }
      case 'getuploadurl': {
        this.uploads.set(String(body.filekey), { cipher: Buffer.alloc(0), aeskey: String(body.aeskey), mediaType: Number(body.media_type) })
        return json(200, { upload_param: `up-${String(body.filekey)}` })
      }
      case 'getconfig':
        return json(200, { ret: 0, typing_ticket: `ticket-${String(body.ilink_user_id)}` })
      case 'sendtyping':
        this.typing.push({ user: String(body.ilink_user_id), status: Number(body.status), ticket: String(body.typing_ticket) })
        return json(200, { ret: 0 })
      case 'msg/notifystop':
        this.notifyStops++
        return json(200, { ret: 0 })
      default:
        return json(404, { error: `unknown endpoint ${endpoint}` })
    }
  }
}
