/**
 * WeChat messages (`WeixinMessage`) → Wechaty message payloads.
 *
 * One WeChat message becomes one Wechaty message per media item, plus one for all its text
 * items together (joined with newlines): the first keeps the WeChat `message_id` as its id, the
 * one made from item k > 0 gets `<message_id>:<k>`. WeChat users send one item per message, so
 * this is nearly always exactly one message with the WeChat id. (Joining the text keeps a
 * message of many text items from costing many replies of the user's send budget.) Ids are
 * strings end to end. Text items are a Text message, images Image, voice Audio (its
 * transcript as the text when present), files Attachment (with the file name), videos Video.
 * A quoted message (`ref_msg`) is kept as the payload field `quote`. Bad input is reported per
 * message and never throws.
 */
import { createHash } from 'node:crypto'
import { types, type payloads } from 'wechaty-puppet'
import { parseMediaKey } from './crypto.js'
import { describeError } from './errors.js'

export const ITEM = { text: 1, image: 2, voice: 3, file: 4, video: 5 } as const

/** Most items of one message that are delivered; the rest are reported and dropped. */
export const MAX_ITEMS = 50
export const MAX_ID_LENGTH = 128
export const MAX_CONTEXT_TOKEN_LENGTH = 8_192
export const MAX_TEXT_LENGTH = 1_000_000

export type MediaKind = 'image' | 'voice' | 'file' | 'video'

/** Where an inbound media item is and how to decrypt it. */
export interface MediaRef {
  kind: MediaKind
  encryptQueryParam: string | null
  fullUrl: string | null
  /** The key text as sent (hex or base64); null: the bytes are not encrypted. */
  aesKey: string | null
  fileName: string
  size: number | null
}

export interface Quote {
  title: string | null
  text: string | null
  typeName: string | null
  messageId: string | null
}

export type IlinkMessagePayload = payloads.Message & {
  quote?: Quote
  ilink: { messageId: string; item: number; seq: number | null; sessionId: string | null; groupId: string | null; createTimeMs: number }
}

export interface ParsedPart {
  payload: IlinkMessagePayload
  media: MediaRef | null
}

export interface ParsedMessage {
  /** The WeChat message id (or a stable digest when the server sent none). */
  messageId: string
  fromUserId: string
  contextToken: string | null
  createTimeMs: number
  parts: ParsedPart[]
  /** Things wrong with the message that did not stop it (reported by the caller). */
  problems: string[]
}

export type ParseResult =
  | { ok: true; message: ParsedMessage }
  | { ok: false; skip: true; reason: string }
  | { ok: false; skip: false; error: string }

type Obj = Record<string, unknown>

function isObj(value: unknown): value is Obj {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

function str(value: unknown): string | null {
  return typeof value === 'string' && value !== '' ? value : null
}

function idText(value: unknown): string | null {
  if (typeof value === 'string' && value.trim() !== '') return value.trim()
  if (typeof value === 'number' && Number.isFinite(value)) return String(value)
  return null
}

const ITEM_NAMES: Record<number, string> = { 1: 'Text', 2: 'Image', 3: 'Audio', 4: 'Attachment', 5: 'Video' }

const EXT: Record<MediaKind, string> = { image: 'jpg', voice: 'silk', file: 'bin', video: 'mp4' }

/** The readable name iLink gives no one: the id without the `@im.wechat` suffix. */
export function displayName(userId: string): string {
  const local = userId.split('@')[0] ?? userId
  return local === '' ? userId : local
}

function mediaOf(kind: MediaKind, item: Obj, baseName: string, problems: string[]): MediaRef {
  const media = isObj(item.media) ? item.media : {}
  // Images may carry the raw key as hex in image_item.aeskey; it is preferred over media.aes_key.
  const key = str(kind === 'image' ? item.aeskey : undefined) ?? str(media.aes_key)
  if (key !== null) {
    try {
      parseMediaKey(key)
    } catch (e) {
      problems.push(`its ${kind} has an unusable media key (${describeError(e)}); downloading it will fail`)
    }
  }
  const encryptQueryParam = str(media.encrypt_query_param)
  const fullUrl = str(media.full_url)
  if (encryptQueryParam === null && fullUrl === null) problems.push(`its ${kind} has no CDN reference (encrypt_query_param); it cannot be downloaded`)
  const fileName = kind === 'file' ? str(item.file_name) ?? `${baseName}.${EXT.file}` : `${baseName}.${EXT[kind]}`
  const rawSize = kind === 'file' ? Number(item.len) : kind === 'video' ? Number(item.video_size) : NaN
  return {
    kind,
    encryptQueryParam,
    fullUrl,
    aesKey: key,
    fileName: fileName.replace(/[/\\\0]/g, '_').slice(0, 255),
    size: Number.isFinite(rawSize) && rawSize >= 0 ? rawSize : null,
  }
}

function quoteOf(ref: unknown): Quote | undefined {
  if (!isObj(ref)) return undefined
  const item = isObj(ref.message_item) ? ref.message_item : null
  let text: string | null = null
  let typeName: string | null = null
  if (item !== null) {
    const type = typeof item.type === 'number' ? item.type : null
    typeName = type === null ? null : ITEM_NAMES[type] ?? 'Unknown'
    if (isObj(item.text_item)) text = str(item.text_item.text)
    else if (isObj(item.voice_item)) text = str(item.voice_item.text)
    else if (isObj(item.file_item)) text = str(item.file_item.file_name)
  }
  return { title: str(ref.title), text, typeName, messageId: idText(ref.svr_id) ?? idText(item?.msg_id) }
}

/** Parses one element of `msgs`. `botId` is the listener of every message. */
export function parseWeixinMessage(raw: unknown, botId: string, now: number = Date.now()): ParseResult {
  if (!isObj(raw)) return { ok: false, skip: false, error: `a message that is not an object (${Array.isArray(raw) ? 'array' : typeof raw})` }
  if (raw.message_type === 2) return { ok: false, skip: true, reason: 'a bot message' }
  const from = str(raw.from_user_id)
  if (from === null || from.length > 256) return { ok: false, skip: false, error: 'a message without a from_user_id string' }
  const problems: string[] = []

  let messageId = idText(raw.message_id)
  if (messageId !== null && messageId.length > MAX_ID_LENGTH) {
    return { ok: false, skip: false, error: `a message_id of ${messageId.length} characters (at most ${MAX_ID_LENGTH})` }
  }
  if (messageId === null) {
    // Stable across re-deliveries of the same message, so duplicates are still recognised.
    messageId = `h${createHash('sha256').update(JSON.stringify(raw)).digest('hex').slice(0, 32)}`
    problems.push(`it has no message_id; its id is a digest of its content (${messageId})`)
  }

  let contextToken = str(raw.context_token)
  if (contextToken !== null && contextToken.length > MAX_CONTEXT_TOKEN_LENGTH) {
    problems.push(`its context_token is ${contextToken.length} characters long (at most ${MAX_CONTEXT_TOKEN_LENGTH}); ignored`)
    contextToken = null
  }
  if (contextToken === null && raw.context_token !== undefined && raw.context_token !== null && raw.context_token !== '') {
    if (typeof raw.context_token !== 'string') problems.push('its context_token is not a string; ignored')
  }
  const createTimeMs = typeof raw.create_time_ms === 'number' && Number.isFinite(raw.create_time_ms) && raw.create_time_ms > 0 ? raw.create_time_ms : now
  const seq = typeof raw.seq === 'number' && Number.isFinite(raw.seq) ? raw.seq : null
  const sessionId = str(raw.session_id)
  const groupId = str(raw.group_id)

  let items: unknown[] = []
  if (Array.isArray(raw.item_list)) items = raw.item_list
  else if (raw.item_list !== undefined && raw.item_list !== null) problems.push('its item_list is not an array; no content delivered')
  if (items.length > MAX_ITEMS) {
    problems.push(`it has ${items.length} items; only the first ${MAX_ITEMS} are delivered`)
    items = items.slice(0, MAX_ITEMS)
  }

  const parts: ParsedPart[] = []
  let textPart: ParsedPart | null = null
  items.forEach((item, index) => {
    if (!isObj(item) || typeof item.type !== 'number') {
      problems.push(`item ${index} is not an object with a numeric type; skipped`)
      return
    }
    if (item.type === ITEM.text && textPart !== null) {
      const t = isObj(item.text_item) ? item.text_item.text : undefined
      if (typeof t !== 'string') {
        problems.push(`text item ${index} has no text string; skipped`)
        return
      }
      const joined = `${textPart.payload.text ?? ''}\n${t}`
      if (joined.length > MAX_TEXT_LENGTH && (textPart.payload.text ?? '').length <= MAX_TEXT_LENGTH) {
        problems.push(`its text is over ${MAX_TEXT_LENGTH} characters; cut`)
      }
      textPart.payload.text = joined.slice(0, MAX_TEXT_LENGTH)
      if (textPart.payload.quote === undefined) {
        const quote = quoteOf(item.ref_msg)
        if (quote !== undefined) textPart.payload.quote = quote
      }
      return
    }
    const id = parts.length === 0 ? messageId! : `${messageId!}:${index}`
    let type: types.Message
    let text = ''
    let media: MediaRef | null = null
    let filename: string | undefined
    const sub = (name: string): Obj | null => (isObj(item[name]) ? (item[name] as Obj) : null)
    switch (item.type) {
      case ITEM.text: {
        const t = sub('text_item')?.text
        if (typeof t !== 'string') {
          problems.push(`text item ${index} has no text string; skipped`)
          return
        }
        type = types.Message.Text
        text = t.length > MAX_TEXT_LENGTH ? t.slice(0, MAX_TEXT_LENGTH) : t
        if (t.length > MAX_TEXT_LENGTH) problems.push(`text item ${index} is ${t.length} characters long; cut to ${MAX_TEXT_LENGTH}`)
        break
      }
      case ITEM.image:
        type = types.Message.Image
        media = mediaOf('image', sub('image_item') ?? {}, id.replace(/:/g, '-'), problems)
        break
      case ITEM.voice: {
        type = types.Message.Audio
        const voice = sub('voice_item') ?? {}
        text = typeof voice.text === 'string' ? voice.text.slice(0, MAX_TEXT_LENGTH) : ''
        media = mediaOf('voice', voice, id.replace(/:/g, '-'), problems)
        break
      }
      case ITEM.file:
        type = types.Message.Attachment
        media = mediaOf('file', sub('file_item') ?? {}, id.replace(/:/g, '-'), problems)
        filename = media.fileName
        break
      case ITEM.video:
        type = types.Message.Video
        media = mediaOf('video', sub('video_item') ?? {}, id.replace(/:/g, '-'), problems)
        filename = media.fileName
        break
      default:
        return // tool-call markers and other item types carry nothing for a chat bot
    }
    const payload: IlinkMessagePayload = {
      id,
      type,
      text,
      talkerId: from,
      listenerId: botId,
      timestamp: createTimeMs,
      ilink: { messageId: messageId!, item: index, seq, sessionId, groupId, createTimeMs },
    }
    if (filename !== undefined) payload.filename = filename
    if (media?.kind === 'image') payload.filename = media.fileName
    const quote = quoteOf(item.ref_msg)
    if (quote !== undefined) payload.quote = quote
    const part = { payload, media }
    if (item.type === ITEM.text) textPart = part
    parts.push(part)
  })
  return { ok: true, message: { messageId, fromUserId: from, contextToken, createTimeMs, parts, problems } }
}
