/**
 * The whole ilink puppet inside a real Wechaty bot, with events.ts, against a small fake iLink
 * service on loopback (test/ilink-fake.ts).
 */
import assert from 'node:assert/strict'
import { mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { FileBox } from 'file-box'
import { WechatyBuilder, type Wechaty } from 'wechaty'
import { attachEvents } from '../src/events.js'
import { silentLogger, type Logger } from '../src/log.js'
import type { EventEnvelope, EventName } from '../src/protocol.js'
import { ILinkError } from '../src/puppets/ilink/errors.js'
import { ilinkCapabilities } from '../src/puppets/ilink/index.js'
import type { IlinkOptions } from '../src/puppets/ilink/options.js'
import { PuppetIlink } from '../src/puppets/ilink/puppet.js'
import { FakeIlink, type FakeUser } from './ilink-fake.js'
import { sleep } from './helpers.js'

const root = mkdtempSync(join(tmpdir(), 'ilink-puppet-'))

interface Running {
  bot: Wechaty
  puppet: PuppetIlink
  envelopes: EventEnvelope[]
  waitFor(name: EventName, predicate?: (e: EventEnvelope) => boolean, timeoutMs?: number): Promise<EventEnvelope>
  stop(): Promise<void>
}

function ilinkOptions(fake: FakeIlink, dataDir: string, extra: Partial<IlinkOptions> = {}): IlinkOptions {
  return {
    baseUrl: fake.url,
    cdnBaseUrl: `${fake.url}/c2c`,
    dataDir,
    longPollTimeoutMs: 300,
    botAgent: 'MetaPuppetTest/1.0',
    channelVersion: '0.1.0',
    sendBudget: { user_first: true, per_user_message: 10, window_s: 86_400 },
    retryDelayMs: 20,
    retryDelayMaxMs: 100,
    maxFileBytes: 10 * 1024 * 1024,
    ...extra,
  }
}

async function startBot(fake: FakeIlink, dataDir: string, options: { log?: Logger; extra?: Partial<IlinkOptions>; errorReportIntervalMs?: number } = {}): Promise<Running> {
  const ilink = ilinkOptions(fake, dataDir, options.extra)
  const puppet = new PuppetIlink({ ilink, log: options.log ?? silentLogger, qrPollIntervalMs: 10, waitForDelivery: true, errorReportIntervalMs: options.errorReportIntervalMs })
  const bot = WechatyBuilder.build({ puppet })
  bot.on('error', () => {})
  const envelopes: EventEnvelope[] = []
  const waiters = new Set<(e: EventEnvelope) => void>()
  const detach = attachEvents({
    bot,
    botName: 'ilink-test',
    log: silentLogger,
    isMock: false,
    capabilities: ilinkCapabilities(ilink),
    emit: (envelope) => {
      envelopes.push(envelope)
      for (const waiter of [...waiters]) waiter(envelope)
    },
  })
  const waitFor = (name: EventName, predicate: (e: EventEnvelope) => boolean = () => true, timeoutMs = 5_000): Promise<EventEnvelope> => {
    const matches = (e: EventEnvelope): boolean => e.name === name && predicate(e)
    const found = envelopes.find(matches)
    if (found !== undefined) return Promise.resolve(found)
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        waiters.delete(waiter)
        reject(new Error(`no ${name} event within ${timeoutMs} ms; got: ${envelopes.map((e) => e.name).join(', ')}`))
      }, timeoutMs)
      const waiter = (e: EventEnvelope): void => {
        if (!matches(e)) return
        clearTimeout(timer)
        waiters.delete(waiter)
        resolve(e)
      }
      waiters.add(waiter)
    })
  }
  await bot.start()
  return {
    bot,
    puppet,
    envelopes,
    waitFor,
    stop: async () => {
      await bot.stop()
      detach()
    },
  }
}

/** Makes the fake confirm the login of the next QR code. */
function confirmNextLogin(fake: FakeIlink): void {
  fake.qrScript.push({ status: 'wait' }, { status: 'scaned' }, { status: 'confirmed', bot_token: fake.token, ilink_bot_id: fake.botId, ilink_user_id: 'owner@im.wechat' })
}

const text = (t: string): Record<string, unknown> => ({ type: 1, text_item: { text: t } })

describe('ilink puppet against a fake iLink service', () => {
  const fake = new FakeIlink()
  const dataDir = join(root, 'data', 'ilink', 'bot')
  const alice: FakeUser = { id: 'alice@im.wechat', tokens: [] }
  let r: Running

  before(async () => {
    await fake.start()
    confirmNextLogin(fake)
    r = await startBot(fake, dataDir)
  })
  after(async () => {
    await r.stop().catch(() => {})
    await fake.stop()
    rmSync(root, { recursive: true, force: true })
  })

  it('logs in by QR: scan (wait → scaned → confirmed), then login with capabilities; credentials 0600 in a 0700 folder', async () => {
    const login = await r.waitFor('login')
    assert.equal(login.payload.id, fake.botId)
    assert.deepEqual(login.payload.capabilities, {
      channel: 'ilink', rooms: false, friendships: false, contact_list: false, files: true, recall: false, typing: true,
      url_links: false, mini_programs: false, contact_cards: false, alias: false,
      send_budget: { user_first: true, per_user_message: 10, window_s: 86_400 },
    })
    const scans = r.envelopes.filter((e) => e.name === 'scan').map((e) => [e.payload.statusName, e.payload.data])
    assert.deepEqual(scans, [['Waiting', 'wait'], ['Scanned', 'scaned'], ['Confirmed', 'confirmed']])
    const first = r.envelopes.find((e) => e.name === 'scan')!
    assert.equal(first.payload.qrcode, `${fake.url}/qr/1`)
    assert.equal(statSync(dataDir).mode & 0o777, 0o700)
    assert.equal(statSync(join(dataDir, 'credentials.json')).mode & 0o777, 0o600)
  })

  it('turns a message with a 64-bit id into a Wechaty message whose id (and event id) is the exact string', async () => {
    const id = fake.userSays(alice, [text('hello bot')], { rawId: '18446744073709551615' })
    const event = await r.waitFor('message', (e) => e.payload.id === id)
    assert.equal(id, '18446744073709551615')
    assert.equal(event.id, `msg:${id}`)
    assert.equal(event.payload.text, 'hello bot')
    assert.equal(event.payload.typeName, 'Text')
    assert.equal(event.payload.talkerId, alice.id)
    assert.equal(event.payload.listenerId, fake.botId)
    assert.equal(event.payload.roomId, null)
    assert.deepEqual(event.payload.talker, { id: alice.id, name: 'alice' })
    assert.equal(event.payload.self, false)
  })

  it('two ids that differ only beyond 2^53 stay two messages', async () => {
    const a = fake.userSays(alice, [text('one')], { rawId: '9007199254740993' })
    const b = fake.userSays(alice, [text('two')], { rawId: '9007199254740992' })
    const ea = await r.waitFor('message', (e) => e.payload.id === a)
    const eb = await r.waitFor('message', (e) => e.payload.id === b)
    assert.deepEqual([ea.payload.text, eb.payload.text], ['one', 'two'])
  })

  it('a reply inside metapuppetWithContext uses THAT message’s token; a plain say the latest one', async () => {
    const first = fake.userSays(alice, [text('question 1')])
    const second = fake.userSays(alice, [text('question 2')])
    await r.waitFor('message', (e) => e.payload.id === second)
    const contact = await r.bot.Contact.find({ id: alice.id })
    assert.ok(contact)
    const before = fake.sent.length
    await r.puppet.metapuppetWithContext(first, () => contact.say('answer 1'))
    await contact.say('plain')
    const [reply, plain] = fake.sent.slice(before)
    assert.equal(reply!.context_token, alice.tokens[alice.tokens.length - 2])
    assert.equal(plain!.context_token, alice.tokens[alice.tokens.length - 1])
    assert.deepEqual(reply!.item_list, [{ type: 1, text_item: { text: 'answer 1' } }])
    assert.equal(reply!.authorization, `Bearer ${fake.token}`)
    assert.match(reply!.client_id, /^metapuppet-/)
  })

  it('a user who never wrote: the send is refused at once (window closed), no request made', async () => {
    const before = fake.count('POST /ilink/bot/sendmessage')
    const bob = await r.bot.Contact.find({ id: 'bob@im.wechat' })
    assert.ok(bob)
    await assert.rejects(bob.say('hi'), (e: unknown) => e instanceof ILinkError && e.code === 'no_context_token' && /send window is closed/.test(e.message))
    assert.equal(fake.count('POST /ilink/bot/sendmessage'), before)
  })

  it('ret = -2 is an ILinkError with code -2 naming the closed window, sent exactly once', async () => {
    const contact = (await r.bot.Contact.find({ id: alice.id }))!
    fake.nextSendRet = -2
    const before = fake.count('POST /ilink/bot/sendmessage')
    await assert.rejects(contact.say('refused'), (e: unknown) => {
      return e instanceof ILinkError && e.code === -2 && /send window to this user is closed; only a new message from the user reopens it/.test(e.message)
    })
    assert.equal(fake.count('POST /ilink/bot/sendmessage'), before + 1)
  })

  it('media in: an image, a file and a voice message decrypt on demand (each key form)', async () => {
    const png = Buffer.from('89504e470d0a1a0a' + 'ab'.repeat(500), 'hex')
    const img = fake.putMedia(png, 'raw64')
    const doc = Buffer.from('%PDF-1.4 hello '.repeat(1000))
    const file = fake.putMedia(doc, 'hex64')
    const ogg = fake.putMedia(Buffer.from('silk audio bytes'), 'hex')
    const imageId = fake.userSays(alice, [{ type: 2, image_item: { media: { encrypt_query_param: img.encrypt_query_param, aes_key: img.aes_key, encrypt_type: 1 } } }])
    const fileId = fake.userSays(alice, [{ type: 4, file_item: { media: { encrypt_query_param: file.encrypt_query_param, aes_key: file.aes_key }, file_name: 'report.pdf', len: String(doc.length) } }])
    const voiceId = fake.userSays(alice, [{ type: 3, voice_item: { media: { encrypt_query_param: ogg.encrypt_query_param, aes_key: ogg.aes_key }, text: 'the transcript' } }])
    const image = await r.waitFor('message', (e) => e.payload.id === imageId)
    const attachment = await r.waitFor('message', (e) => e.payload.id === fileId)
    const voice = await r.waitFor('message', (e) => e.payload.id === voiceId)
    assert.equal(image.payload.typeName, 'Image')
    assert.equal(attachment.payload.typeName, 'Attachment')
    assert.equal(attachment.payload.filename, 'report.pdf')
    assert.equal(voice.payload.typeName, 'Audio')
    assert.equal(voice.payload.text, 'the transcript')
    const got = async (id: string): Promise<Buffer> => (await (await r.bot.Message.find({ id }))!.toFileBox()).toBuffer()
    assert.deepEqual(await got(imageId), png)
    assert.deepEqual(await got(fileId), doc)
    assert.deepEqual(await got(voiceId), Buffer.from('silk audio bytes'))
    const box = await (await r.bot.Message.find({ id: fileId }))!.toFileBox()
    assert.equal(box.name, 'report.pdf')
  })

  it('a quoted message keeps its reference as payload.quote', async () => {
    const id = '4000000000000000001'
    fake.pushRaw(
      `{"message_id":${id},"from_user_id":"${alice.id}","message_type":1,"context_token":"ctx-quote","item_list":[` +
        '{"type":1,"text_item":{"text":"I agree"},"ref_msg":{"title":"earlier","svr_id":12345678901234567890,"message_item":{"type":1,"text_item":{"text":"the original"}}}}]}',
    )
    const event = await r.waitFor('message', (e) => e.payload.id === id)
    assert.deepEqual(event.payload.quote, { title: 'earlier', text: 'the original', typeName: 'Text', messageId: '12345678901234567890' })
  })

  it('media out: an image and a 2 MB file are uploaded encrypted and arrive byte for byte', async () => {
    const contact = (await r.bot.Contact.find({ id: alice.id }))!
    const picture = Buffer.alloc(4096, 7)
    const big = Buffer.from(Array.from({ length: 2 * 1024 * 1024 }, (_, i) => (i * 31) & 0xff))
    const before = fake.sent.length
    await contact.say(FileBox.fromBuffer(picture, 'cat.png'))
    await contact.say(FileBox.fromBuffer(big, 'data.bin'))
    const [imageMsg, fileMsg] = fake.sent.slice(before)
    assert.equal(imageMsg!.item_list.length, 1)
    assert.equal(imageMsg!.item_list[0]!.type, 2)
    assert.deepEqual(fake.decryptSent(imageMsg!.item_list[0]!), picture)
    assert.equal(fileMsg!.item_list[0]!.type, 4)
    const fileItem = fileMsg!.item_list[0]!.file_item as { file_name: string; len: string; media: { encrypt_type: number } }
    assert.equal(fileItem.file_name, 'data.bin')
    assert.equal(fileItem.len, String(big.length))
    assert.equal(fileItem.media.encrypt_type, 1)
    assert.deepEqual(fake.decryptSent(fileMsg!.item_list[0]!), big)
    assert.deepEqual(
      [...fake.uploads.values()].slice(-2).map((u) => u.mediaType),
      [1, 3],
    )
  })

  it('typing: getconfig once (ticket cached), then sendtyping 1 and 2', async () => {
    assert.equal(await r.puppet.metapuppetTyping(alice.id, true), true)
    assert.equal(await r.puppet.metapuppetTyping(alice.id, false), true)
    assert.deepEqual(fake.typing.slice(-2), [
      { user: alice.id, status: 1, ticket: `ticket-${alice.id}` },
      { user: alice.id, status: 2, ticket: `ticket-${alice.id}` },
    ])
    assert.equal(fake.count('POST /ilink/bot/getconfig'), 1)
  })

  it('rooms, friendships, the contact list and recall are not supported, at once', async () => {
    const started = Date.now()
    await assert.rejects(r.puppet.roomList(), /rooms is not supported by the ilink channel/)
    await assert.rejects(r.puppet.contactList(), /the contact list is not supported by the ilink channel/)
    await assert.rejects(r.puppet.friendshipAccept('x'), /friendships is not supported by the ilink channel/)
    await assert.rejects(r.puppet.messageRecall('x'), /recalling a message is not supported/)
    // Wechaty's Room.findAll swallows the error (emits it, answers []): the Python side checks the capabilities first.
    const errorsBefore = r.envelopes.filter((e) => e.name === 'error').length
    assert.deepEqual(await r.bot.Room.findAll(), [])
    await r.waitFor('error', (e) => r.envelopes.filter((x) => x.name === 'error').indexOf(e) >= errorsBefore && /rooms is not supported/.test(String(e.payload.message)))
    assert.ok(Date.now() - started < 1_000)
  })

  it('bad input: a message without a sender, one with 10,000 items, one with a bad key; the valid one still arrives', async () => {
    const before = r.puppet.stats.badMessages
    fake.pushRaw('{"message_id": 1, "item_list": [{"type":1,"text_item":{"text":"no sender"}}]}')
    fake.pushRaw('"not even an object"')
    const many = Array.from({ length: 10_000 }, (_, i) => text(`item ${i}`))
    const manyId = fake.userSays(alice, many)
    const badKeyId = fake.userSays(alice, [{ type: 2, image_item: { media: { encrypt_query_param: 'dl-none', aes_key: 'not-a-key' } } }])
    const okId = fake.userSays(alice, [text('still here')])
    await r.waitFor('message', (e) => e.payload.id === okId)
    const badKey = await r.waitFor('message', (e) => e.payload.id === badKeyId)
    assert.equal(badKey.payload.typeName, 'Image')
    await assert.rejects(async () => (await r.bot.Message.find({ id: badKeyId }))!.toFileBox(), (e: unknown) => e instanceof ILinkError && e.code === 'media_key')
    // Its first 50 text items arrive as one text message (joined), not as 10,000 messages.
    const parts = r.envelopes.filter((e) => e.name === 'message' && String(e.payload.id).startsWith(manyId))
    assert.equal(parts.length, 1)
    assert.equal(String(parts[0]!.payload.text).split('\n').length, 50)
    assert.ok(r.puppet.stats.badMessages >= before + 4)
  })

  it('failing getupdates: capped backoff, a handful of error events (not one per retry), then recovery', async () => {
    const errorsBefore = r.envelopes.filter((e) => e.name === 'error').length
    const pollsBefore = fake.count('POST /ilink/bot/getupdates')
    fake.failures.set('getupdates', 12)
    await sleep(100)
    const id = fake.userSays(alice, [text('after the outage')])
    await r.waitFor('message', (e) => e.payload.id === id, 10_000)
    const polls = fake.count('POST /ilink/bot/getupdates') - pollsBefore
    const errors = r.envelopes.filter((e) => e.name === 'error').slice(errorsBefore)
    assert.ok(polls >= 13, `polls ${polls}`)
    assert.ok(errors.length >= 1 && errors.length <= 2, `errors ${errors.length}`)
    assert.match(String(errors[0]!.payload.message), /getupdates: HTTP 500/)
  })

  it('restart: stop sends notifystop; a new process logs in from the saved credentials (no scan) and resumes the cursor', async () => {
    const last = fake.userSays(alice, [text('before restart')])
    await r.waitFor('message', (e) => e.payload.id === last)
    await sleep(50)
    const stopsBefore = fake.notifyStops
    await r.stop()
    assert.equal(fake.notifyStops, stopsBefore + 1)
    const whileDown = fake.userSays(alice, [text('while down')])
    const qrBefore = fake.qrCount
    const seenBefore = new Set(r.envelopes.filter((e) => e.name === 'message').map((e) => e.id))
    r = await startBot(fake, dataDir)
    await r.waitFor('login')
    const event = await r.waitFor('message', (e) => e.payload.id === whileDown)
    assert.equal(event.payload.text, 'while down')
    await sleep(400)
    assert.equal(fake.qrCount, qrBefore, 'no new QR code')
    assert.equal(r.envelopes.filter((e) => e.name === 'scan').length, 0)
    const repeated = r.envelopes.filter((e) => e.name === 'message' && seenBefore.has(e.id))
    assert.deepEqual(repeated.map((e) => e.payload.text), [], 'nothing delivered twice')
    // The saved latest context token survived the restart too.
    const contact = (await r.bot.Contact.find({ id: alice.id }))!
    await contact.say('after restart')
    assert.equal(fake.sent[fake.sent.length - 1]!.context_token, alice.tokens[alice.tokens.length - 1])
  })

  it('session expiry (-14): logout with the reason, a new QR code (scan), then login again', async () => {
    const scansBefore = r.envelopes.filter((e) => e.name === 'scan').length
    fake.expired = true
    const logout = await r.waitFor('logout', () => true, 5_000)
    assert.match(String(logout.payload.reason), /session expired.*scan the new QR code/)
    const scan = await r.waitFor('scan', (e) => e.payload.statusName === 'Waiting' && r.envelopes.indexOf(e) >= 0, 5_000)
    assert.ok(r.envelopes.filter((e) => e.name === 'scan').length > scansBefore)
    assert.match(String(scan.payload.qrcode), /\/qr\/\d+$/)
    assert.deepEqual(readdirSync(dataDir).filter((n) => n === 'credentials.json'), [], 'the dead token is forgotten')
    // Sending while logged out fails at once, clearly.
    await assert.rejects(r.puppet.messageSendText(alice.id, 'x'), (e: unknown) => e instanceof ILinkError && e.code === 'not_logged_in')
    fake.expired = false
    confirmNextLogin(fake)
    const logins = (): number => r.envelopes.filter((e) => e.name === 'login').length
    const before = logins()
    for (let i = 0; i < 100 && logins() === before; i++) await sleep(50)
    assert.equal(logins(), before + 1)
    const id = fake.userSays(alice, [text('hello again')])
    await r.waitFor('message', (e) => e.payload.id === id)
  })
})
