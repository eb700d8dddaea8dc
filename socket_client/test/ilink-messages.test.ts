import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { types } from 'wechaty-puppet'
import { MAX_ITEMS, parseWeixinMessage, type ParsedMessage } from '../src/puppets/ilink/messages.js'

const BOT = 'bot@im.bot'
const base = { message_id: '7000000000000000001', from_user_id: 'alice@im.wechat', message_type: 1, create_time_ms: 1_700_000_000_000, context_token: 'ctx' }

function parsed(raw: unknown): ParsedMessage {
  const result = parseWeixinMessage(raw, BOT, 42)
  assert.ok(result.ok, JSON.stringify(result))
  return result.message
}

describe('ilink messages → Wechaty payloads', () => {
  it('one text item: one Text message with the WeChat id', () => {
    const m = parsed({ ...base, item_list: [{ type: 1, text_item: { text: 'hi' } }] })
    assert.equal(m.parts.length, 1)
    const p = m.parts[0]!.payload
    assert.deepEqual([p.id, p.type, p.text, p.talkerId, p.listenerId, p.timestamp], ['7000000000000000001', types.Message.Text, 'hi', 'alice@im.wechat', BOT, 1_700_000_000_000])
    assert.equal(m.contextToken, 'ctx')
    assert.deepEqual(m.problems, [])
  })

  it('mixed items: texts joined in one message, each media item its own, ids <id>:<index>', () => {
    const m = parsed({
      ...base,
      item_list: [
        { type: 1, text_item: { text: 'caption' } },
        { type: 2, image_item: { media: { encrypt_query_param: 'p1', aes_key: Buffer.alloc(16, 1).toString('base64') } } },
        { type: 1, text_item: { text: 'more' } },
        { type: 5, video_item: { media: { encrypt_query_param: 'p2' }, video_size: 99 } },
        { type: 11, tool_call_start_item: {} },
      ],
    })
    assert.deepEqual(m.parts.map((p) => [p.payload.id, types.Message[p.payload.type], p.payload.text]), [
      ['7000000000000000001', 'Text', 'caption\nmore'],
      ['7000000000000000001:1', 'Image', ''],
      ['7000000000000000001:3', 'Video', ''],
    ])
    assert.equal(m.parts[1]!.media?.encryptQueryParam, 'p1')
    assert.equal(m.parts[2]!.media?.size, 99)
  })

  it('voice: the transcript is the text; file: the name; quote: the reference', () => {
    const voice = parsed({ ...base, item_list: [{ type: 3, voice_item: { media: { encrypt_query_param: 'v' }, text: 'spoken words' } }] })
    assert.equal(voice.parts[0]!.payload.type, types.Message.Audio)
    assert.equal(voice.parts[0]!.payload.text, 'spoken words')
    const file = parsed({ ...base, item_list: [{ type: 4, file_item: { media: { encrypt_query_param: 'f' }, file_name: '../../etc/passwd', len: '12' } }] })
    assert.equal(file.parts[0]!.payload.filename, '.._.._etc_passwd') // no path separators
    assert.equal(file.parts[0]!.media?.size, 12)
    const quote = parsed({ ...base, item_list: [{ type: 1, text_item: { text: 'yes' }, ref_msg: { title: 't', message_item: { type: 2 } } }] })
    assert.deepEqual(quote.parts[0]!.payload.quote, { title: 't', text: null, typeName: 'Image', messageId: null })
  })

  it('skips bot messages; refuses non-objects and messages without a sender', () => {
    assert.deepEqual(parseWeixinMessage({ ...base, message_type: 2 }, BOT), { ok: false, skip: true, reason: 'a bot message' })
    for (const bad of [null, 3, 'x', [], { ...base, from_user_id: '' }, { ...base, from_user_id: 5 }]) {
      const result = parseWeixinMessage(bad, BOT)
      assert.equal(result.ok, false)
      assert.equal(!result.ok && result.skip, false)
    }
  })

  it('a message without message_id gets a stable digest id (the same for a re-delivery)', () => {
    const raw = { from_user_id: 'alice@im.wechat', seq: 3, item_list: [{ type: 1, text_item: { text: 'x' } }] }
    const a = parsed(raw)
    const b = parsed(JSON.parse(JSON.stringify(raw)))
    assert.match(a.messageId, /^h[0-9a-f]{32}$/)
    assert.equal(a.messageId, b.messageId)
    assert.equal(a.parts[0]!.payload.timestamp, 42) // no create_time_ms: now
    assert.equal(a.problems.length, 1)
  })

  it('bad parts are reported and skipped; the rest is kept; too many items are cut', () => {
    const m = parsed({
      ...base,
      context_token: 7,
      item_list: [null, { type: 'x' }, { type: 1, text_item: {} }, { type: 1, text_item: { text: 'ok' } }, { type: 2, image_item: { media: { aes_key: '???' } } }],
    })
    assert.deepEqual(m.parts.map((p) => p.payload.text), ['ok', ''])
    assert.equal(m.contextToken, null)
    assert.ok(m.problems.some((p) => /context_token is not a string/.test(p)))
    assert.ok(m.problems.some((p) => /unusable media key/.test(p)))
    assert.ok(m.problems.some((p) => /no CDN reference/.test(p)))
    const many = parsed({ ...base, item_list: Array.from({ length: 10_000 }, (_, i) => ({ type: 2, image_item: { media: { encrypt_query_param: `p${i}` } } })) })
    assert.equal(many.parts.length, MAX_ITEMS)
    assert.ok(many.problems.some((p) => /10000 items; only the first 50/.test(p)))
    const noList = parsed({ ...base, item_list: 'nope' })
    assert.equal(noList.parts.length, 0)
  })
})
