/**
 * A real Wechaty bot on the mock puppet, driven through the MockKit; checks the event
 * payloads events.ts produces, the MockKit calls the Python test kit relies on, and the
 * control channel's restart-bot.
 */
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import type { Wechaty } from 'wechaty'
import { Control } from '../src/control.js'
import { Executor } from '../src/executor.js'
import { silentLogger } from '../src/log.js'
import type { JsonObject } from '../src/protocol.js'
import { sleep, startMockBot, type MockBot } from './helpers.js'

describe('mock bot end to end', () => {
  let m: MockBot
  before(async () => {
    m = await startMockBot('Integration Bot')
  })
  after(async () => {
    await m.stop()
  })

  it('emits login with the bot user', async () => {
    const login = await m.waitForEvent('login')
    assert.deepEqual(login.payload, {
      id: m.mock.userId,
      name: 'Integration Bot',
      capabilities: {
        channel: 'mock', rooms: true, friendships: true, contact_list: true, files: true, recall: true, typing: false,
        url_links: true, mini_programs: true, contact_cards: true, alias: true, send_budget: null,
      },
    })
    assert.equal(login.bot, 'test-bot')
    assert.match(login.id, /^[0-9a-f-]{36}$/)
    assert.ok(Math.abs(login.ts - Date.now()) < 10_000)
  })

  it('forwards a direct message as a plain payload', async () => {
    const aliceId = m.mock.contact('Alice')
    const messageId = m.mock.say(aliceId, { text: 'hello bot' }, null)
    assert.equal(typeof messageId, 'string')
    const event = await m.waitForEvent('message', (e) => e.payload.id === messageId)
    // A message's envelope id comes from its Wechaty id: a re-delivery is a duplicate the server drops.
    assert.equal(event.id, `msg:${messageId}`)
    const p = event.payload
    assert.equal(p.text, 'hello bot')
    assert.equal(p.self, false)
    assert.equal(p.mentionSelf, false)
    assert.deepEqual(p.talker, { id: aliceId, name: 'Alice' })
    assert.equal(p.talkerId, aliceId)
    assert.equal(p.fromId, aliceId)
    assert.equal(p.toId, m.mock.userId)
    assert.equal(p.listenerId, m.mock.userId)
    assert.equal(p.roomId, null)
    assert.equal(p.room, null)
    assert.deepEqual(p.mentionIdList, [])
    assert.equal(p.type, 7)
    assert.equal(p.typeName, 'Text')
    assert.equal(typeof p.timestamp, 'number')
    assert.deepEqual(JSON.parse(JSON.stringify(event)), event) // plain JSON only
  })

  it('forwards a room message that mentions the bot', async () => {
    const bobId = m.mock.contact('Bob')
    const roomId = m.mock.room('Test Room', [bobId])
    assert.match(roomId, /@/)
    const messageId = m.mock.say(bobId, { text: '@Integration Bot hi' }, roomId, [m.mock.userId])
    const { payload: p } = await m.waitForEvent('message', (e) => e.payload.id === messageId)
    assert.deepEqual(p.room, { id: roomId, topic: 'Test Room' })
    assert.equal(p.roomId, roomId)
    assert.equal(p.listenerId, null)
    assert.equal(p.toId, null)
    assert.deepEqual(p.mentionIdList, [m.mock.userId])
    assert.equal(p.mentionSelf, true)
  })

  it('forwards a file message and the bot can read the file', async () => {
    const carolId = m.mock.contact('Carol')
    const base64 = Buffer.from('file body').toString('base64')
    const messageId = m.mock.say(carolId, { file: { name: 'notes.txt', base64 } }, null)
    const { payload: p } = await m.waitForEvent('message', (e) => e.payload.id === messageId)
    assert.equal(p.typeName, 'Attachment')
    assert.equal(p.filename, 'notes.txt')
    assert.equal(p.text, '')
    const executor = new Executor({ bot: m.bot, log: silentLogger, mock: m.mock, mocker: m.mocker })
    const response = await executor.run({
      code: 'const msg = await bot.Message.find({ id: args.id }); return await msg!.toFileBox()',
      args: { id: messageId },
    })
    assert.deepEqual(response, { ok: true, result: { name: 'notes.txt', mimeType: 'text/plain', base64 } })
    const imageId = m.mock.say(carolId, { file: { name: 'cat.png', base64 } }, null)
    const image = await m.waitForEvent('message', (e) => e.payload.id === imageId)
    assert.equal(image.payload.typeName, 'Image')
  })

  it('marks the bot\'s own messages self=true', async () => {
    const daveId = m.mock.contact('Dave')
    const executor = new Executor({ bot: m.bot, log: silentLogger, mock: m.mock, mocker: m.mocker })
    const response = await executor.run({
      code: 'const c = await bot.Contact.find({ id: args.id }); await c!.say(args.text); return c',
      args: { id: daveId, text: 'reply from bot' },
    })
    assert.equal(response.ok, true)
    const wire = (response as { result: JsonObject }).result
    assert.equal(wire.type, 'Contact')
    assert.equal(wire.id, daveId)
    const { payload: p } = await m.waitForEvent('message', (e) => e.payload.text === 'reply from bot')
    assert.equal(p.self, true)
    assert.equal(p.toId, daveId)
    assert.equal(p.fromId, m.mock.userId)
  })

  it('drives friendship requests and records their acceptance', async () => {
    const erinId = m.mock.contact('Erin', { friend: false })
    const friendshipId = m.mock.friendshipRequest(erinId, 'please add me')
    const { payload: p } = await m.waitForEvent('friendship', (e) => e.payload.id === friendshipId)
    assert.deepEqual({ ...p, timestamp: 0 }, {
      id: friendshipId,
      type: 2,
      typeName: 'Receive',
      contactId: erinId,
      hello: 'please add me',
      timestamp: 0,
      contact: { id: erinId, name: 'Erin' },
    })
    assert.equal(m.mock.accepted(friendshipId), false)
    const executor = new Executor({ bot: m.bot, log: silentLogger, mock: m.mock })
    const response = await executor.run({
      code: 'const f = await bot.Friendship.load(args.id); await f.ready(); await f.accept(); return (await bot.Contact.find({ id: args.contactId }))!.friend()',
      args: { id: friendshipId, contactId: erinId },
    })
    assert.deepEqual(response, { ok: true, result: true })
    assert.equal(m.mock.accepted(friendshipId), true)
  })

  it('drives room invitations and records their acceptance', async () => {
    const frankId = m.mock.contact('Frank')
    const invitationId = m.mock.roomInvitation(frankId, 'Invite Room', [frankId])
    const { payload: p } = await m.waitForEvent('room-invite', (e) => e.payload.id === invitationId)
    assert.deepEqual({ ...p, timestamp: 0 }, {
      id: invitationId,
      inviterId: frankId,
      topic: 'Invite Room',
      memberCount: 1,
      memberIdList: [frankId],
      receiverId: m.mock.userId,
      timestamp: 0,
    })
    const executor = new Executor({ bot: m.bot, log: silentLogger, mock: m.mock })
    const response = await executor.run({
      code: 'const inv = bot.RoomInvitation.load(args.id); await inv.accept(); return inv',
      args: { id: invitationId },
    })
    assert.equal(response.ok, true)
    const wire = (response as { result: JsonObject }).result
    assert.equal(wire.type, 'RoomInvitation')
    assert.equal((wire.payload as JsonObject).topic, 'Invite Room')
    assert.equal(m.mock.invitationAccepted(invitationId), true)
  })

  it('emits room-join, room-topic and room-leave, without spurious error events', async () => {
    const ginaId = m.mock.contact('Gina')
    const hankId = m.mock.contact('Hank')
    const roomId = m.mock.room('Room Events', [ginaId])
    m.mock.roomJoin(roomId, [hankId], ginaId)
    const join = await m.waitForEvent('room-join', (e) => e.payload.roomId === roomId)
    assert.deepEqual({ ...join.payload, timestamp: 0 }, {
      roomId, topic: 'Room Events', inviteeIdList: [hankId], inviterId: ginaId, timestamp: 0,
    })
    m.mock.roomTopic(roomId, 'Renamed', ginaId)
    const topic = await m.waitForEvent('room-topic', (e) => e.payload.roomId === roomId)
    assert.deepEqual({ ...topic.payload, timestamp: 0 }, {
      roomId, topic: 'Renamed', oldTopic: 'Room Events', changerId: ginaId, timestamp: 0,
    })
    m.mock.roomLeave(roomId, [hankId], ginaId)
    const leave = await m.waitForEvent('room-leave', (e) => e.payload.roomId === roomId)
    assert.deepEqual({ ...leave.payload, timestamp: 0 }, {
      roomId, topic: 'Renamed', leaverIdList: [hankId], removerId: ginaId, timestamp: 0,
    })
    const executor = new Executor({ bot: m.bot, log: silentLogger })
    const members = await executor.run({
      code: 'const r = await bot.Room.find({ id: args.id }); return (await r!.memberAll()).map(c => c.id).sort()',
      args: { id: roomId },
    })
    assert.deepEqual(members, { ok: true, result: [ginaId, m.mock.userId].sort() })
    await sleep(50)
    assert.deepEqual(m.envelopes.filter((e) => e.name === 'error').map((e) => e.payload.message), [])
  })

  it('records puppet calls the mock ignores', async () => {
    const ivyId = m.mock.contact('Ivy')
    const roomId = m.mock.room('Calls Room', [ivyId])
    const executor = new Executor({ bot: m.bot, log: silentLogger, mock: m.mock })
    const response = await executor.run({
      code: [
        'const ivy = (await bot.Contact.find({ id: args.ivy }))!',
        'await ivy.alias("Ivy Alias")',
        'const room = (await bot.Room.find({ id: args.room }))!',
        'await room.topic("New Calls Topic")',
        'await room.announce("hello all")',
        'await room.remove(ivy)',
        'await ivy.say(new bot.UrlLink({ title: "t", url: "https://example.org" }))',
        'if (await ivy.alias() !== "Ivy Alias" || await room.topic() !== "New Calls Topic") throw new Error("setters not applied")',
        'return mock.calls.map((c: { method: string }) => c.method)',
      ].join('\n'),
      args: { ivy: ivyId, room: roomId },
    })
    assert.deepEqual(response, {
      ok: true,
      result: ['contactAlias', 'roomTopic', 'roomAnnounce', 'roomDel', 'messageSendUrl'],
    })
    assert.deepEqual(m.mock.calls[0], { method: 'contactAlias', args: [ivyId, 'Ivy Alias'] })
    assert.deepEqual(m.mock.calls[1], { method: 'roomTopic', args: [roomId, 'New Calls Topic'] })
  })

  it('gives snippets the MockKit', async () => {
    const executor = new Executor({ bot: m.bot, log: silentLogger, mock: m.mock, mocker: m.mocker })
    const response = await executor.run({
      code: 'const id = mock.contact(args.name); const c = await bot.Contact.find({ id }); return [id, c!.name(), mock.userId]',
      args: { name: 'Judy' },
    })
    assert.equal(response.ok, true)
    const [id, name, userId] = (response as { result: string[] }).result
    assert.equal(typeof id, 'string')
    assert.equal(name, 'Judy')
    assert.equal(userId, m.mock.userId)
    const bad = await executor.run({ code: 'return mock.say("nobody", { text: "x" }, null)' })
    assert.equal(bad.ok, false)
    assert.match((bad as { error: { message: string } }).error.message, /unknown contact id "nobody"/)
  })
})

describe('control on the mock bot', () => {
  let m: MockBot
  before(async () => {
    m = await startMockBot('Control Bot')
  })
  after(async () => {
    await m.stop()
  })

  it('restart-bot stops and starts the bot; the mock user logs in again', async () => {
    const control = new Control({ bot: m.bot, mock: m.mock, log: silentLogger })
    const before = m.envelopes.length
    const [a, b] = await Promise.all([control.handle({ action: 'restart-bot' }), control.handle({ action: 'restart-bot' })])
    assert.deepEqual(a, { ok: true })
    assert.deepEqual(b, { ok: true })
    assert.equal(control.restarts, 1, 'concurrent requests share one restart')
    await m.waitForEvent('login', (e) => m.envelopes.indexOf(e) >= before)
    const names = m.envelopes.slice(before).map((e) => e.name)
    assert.deepEqual(names.filter((n) => n === 'logout' || n === 'login'), ['logout', 'login'])
    assert.equal(m.bot.isLoggedIn, true)

    // The restarted bot works: a new message arrives as an event.
    const aliceId = m.mock.contact('Alice')
    const messageId = m.mock.say(aliceId, { text: 'after the restart' }, null)
    const message = await m.waitForEvent('message', (e) => e.payload.id === messageId)
    assert.equal(message.payload.text, 'after the restart')
  })

  it('answers bad_request for unknown or malformed requests, runtime for failures', async () => {
    const control = new Control({ bot: m.bot, mock: m.mock, log: silentLogger })
    for (const req of [{ action: 'reboot-universe' }, {}, null, 'restart-bot', { action: 7 }]) {
      const response = await control.handle(req)
      assert.ok(!response.ok)
      assert.equal(response.error.kind, 'bad_request', JSON.stringify(req))
      assert.match(response.error.message, /control request must be \{action: "restart-bot" \| "self-messages"\}/)
    }
    const broken = { stop: () => Promise.reject(new TypeError('cannot stop')), start: () => Promise.resolve() }
    const failing = await new Control({ bot: broken as unknown as Wechaty, mock: null, log: silentLogger }).handle({ action: 'restart-bot' })
    assert.ok(!failing.ok)
    assert.deepEqual([failing.error.kind, failing.error.name, failing.error.message], ['runtime', 'TypeError', 'cannot stop'])

    const hanging = { stop: () => new Promise(() => {}), start: () => Promise.resolve() }
    const slow = await new Control({ bot: hanging as unknown as Wechaty, mock: null, log: silentLogger, stepTimeoutMs: 50 })
      .handle({ action: 'restart-bot' })
    assert.ok(!slow.ok)
    assert.match(slow.error.message, /bot\.stop\(\) did not finish within 50 ms/)
  })
})
