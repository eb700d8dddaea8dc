import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { FileBox } from 'file-box'
import { SerializeError, toWire } from '../src/serialize.js'
import { startMockBot, type MockBot } from './helpers.js'

describe('toWire: plain values', () => {
  it('maps undefined, NaN and infinities to null', async () => {
    assert.equal(await toWire(undefined), null)
    assert.equal(await toWire(Number.NaN), null)
    assert.equal(await toWire(Infinity), null)
    assert.deepEqual(await toWire([undefined, -Infinity, 1.5]), [null, null, 1.5])
    assert.deepEqual(await toWire({ a: undefined, b: Number.NaN }), { a: null, b: null })
  })

  it('turns bigint into a string', async () => {
    assert.equal(await toWire(12345678901234567890n), '12345678901234567890')
  })

  it('turns Buffer, Uint8Array and ArrayBuffer into base64', async () => {
    const bytes = Buffer.from([0, 1, 2, 250, 255])
    assert.equal(await toWire(bytes), bytes.toString('base64'))
    assert.equal(await toWire(new Uint8Array([104, 105])), 'aGk=')
    assert.equal(await toWire(new Uint8Array([104, 105]).buffer), 'aGk=')
    const slice = Buffer.from('xxhixx').subarray(2, 4)
    assert.equal(await toWire(slice), 'aGk=')
  })

  it('turns Date, Map, Set and Error into JSON', async () => {
    const date = new Date('2024-01-02T03:04:05.678Z')
    const error = new RangeError('out of range')
    const result = await toWire({
      date,
      bad: new Date(Number.NaN),
      map: new Map<unknown, unknown>([['a', 1], [2, 'two']]),
      set: new Set([1, 'x']),
      error,
    })
    assert.deepEqual(result, {
      date: '2024-01-02T03:04:05.678Z',
      bad: null,
      map: { a: 1, 2: 'two' },
      set: [1, 'x'],
      error: { name: 'RangeError', message: 'out of range', stack: error.stack ?? null },
    })
  })

  it('replaces cycles with null but keeps shared references', async () => {
    const a: Record<string, unknown> = { name: 'a' }
    a.self = a
    const shared = { v: 1 }
    const list: unknown[] = [1]
    list.push(list)
    assert.deepEqual(await toWire({ a, x: shared, y: shared, list }), {
      a: { name: 'a', self: null },
      x: { v: 1 },
      y: { v: 1 },
      list: [1, null],
    })
  })

  it('drops functions and symbols from objects, null in arrays', async () => {
    assert.deepEqual(await toWire({ f: () => 1, s: Symbol('s'), k: 1 }), { k: 1 })
    assert.deepEqual(await toWire([() => 1, Symbol('s'), 2]), [null, null, 2])
    assert.equal(await toWire(() => 1), null)
  })

  it('cuts nesting deeper than 100 levels', async () => {
    let deep: unknown = 'bottom'
    for (let i = 0; i < 150; i++) deep = { d: deep }
    let node = (await toWire(deep)) as Record<string, unknown> | null
    let depth = 0
    while (node !== null && typeof node === 'object') {
      node = node.d as Record<string, unknown> | null
      depth++
    }
    assert.equal(node, null)
    assert.equal(depth, 101)
  })

  it('uses toJSON of class instances and own fields otherwise', async () => {
    class Point {
      constructor(public x: number, public y: number) {}
      norm(): number { return Math.hypot(this.x, this.y) }
    }
    assert.deepEqual(await toWire(new Point(3, 4)), { x: 3, y: 4 })
    assert.equal(await toWire(new URL('https://example.org/a?b=1')), 'https://example.org/a?b=1')
  })

  it('throws SerializeError beyond the size cap', async () => {
    await assert.rejects(toWire('x'.repeat(2000), 1000), SerializeError)
    await assert.rejects(toWire({ list: Array.from({ length: 200 }, () => 'abcdefgh') }, 1000), /too large/)
    assert.equal(await toWire('x'.repeat(900), 1000), 'x'.repeat(900))
  })
})

describe('toWire: FileBox', () => {
  it('turns a FileBox into {name, mimeType, base64}', async () => {
    const box = FileBox.fromBase64(Buffer.from('hello').toString('base64'), 'hello.txt')
    assert.deepEqual(await toWire({ file: box }), {
      file: { name: 'hello.txt', mimeType: 'text/plain', base64: Buffer.from('hello').toString('base64') },
    })
  })

  it('counts the file contents against the size cap', async () => {
    const box = FileBox.fromBase64(Buffer.alloc(4000).toString('base64'), 'big.bin')
    await assert.rejects(toWire(box, 1000), SerializeError)
  })
})

describe('toWire: Wechaty objects', () => {
  let mockBot: MockBot
  before(async () => {
    mockBot = await startMockBot('Serializer Bot')
  })
  after(async () => {
    await mockBot.stop()
  })

  it('turns Contact, ContactSelf, Room and Message into {type, id, payload}', async () => {
    const { bot, mock } = mockBot
    const aliceId = mock.contact('Alice')
    const roomId = mock.room('Serializer Room', [aliceId])
    const alice = await bot.Contact.find({ id: aliceId })
    const room = await bot.Room.find({ id: roomId })
    assert.ok(alice && room)

    const wire = (await toWire({ alice, self: bot.currentUser, room })) as Record<string, Record<string, unknown>>
    assert.equal(wire.alice?.type, 'Contact')
    assert.equal(wire.alice?.id, aliceId)
    assert.equal((wire.alice?.payload as Record<string, unknown>).name, 'Alice')
    assert.equal(wire.self?.type, 'ContactSelf')
    assert.equal(wire.self?.id, mock.userId)
    assert.equal((wire.self?.payload as Record<string, unknown>).name, 'Serializer Bot')
    assert.equal(wire.room?.type, 'Room')
    assert.equal(wire.room?.id, roomId)
    assert.equal((wire.room?.payload as Record<string, unknown>).topic, 'Serializer Room')
    assert.deepEqual(
      [...((wire.room?.payload as Record<string, unknown>).memberIdList as string[])].sort(),
      [aliceId, mock.userId].sort(),
    )
    // payloads are plain JSON: the mock leaves ownerId undefined
    assert.equal((wire.room?.payload as Record<string, unknown>).ownerId, null)

    const messageId = mock.say(aliceId, { text: 'serialize me' }, null)
    const message = await bot.Message.find({ id: messageId ?? '' })
    assert.ok(message)
    const wireMessage = (await toWire(message)) as Record<string, unknown>
    assert.equal(wireMessage.type, 'Message')
    assert.equal(wireMessage.id, messageId)
    assert.equal((wireMessage.payload as Record<string, unknown>).text, 'serialize me')
    assert.equal((wireMessage.payload as Record<string, unknown>).talkerId, aliceId)
    JSON.stringify(wireMessage) // plain JSON, no live objects
  })

  it('gives UrlLink and similar objects without an id a null id', async () => {
    const link = new mockBot.bot.UrlLink({ title: 'MetaPuppet', url: 'https://example.org' })
    assert.deepEqual(await toWire(link), {
      type: 'UrlLink',
      id: null,
      payload: { title: 'MetaPuppet', url: 'https://example.org' },
    })
  })

  it('turns the bot itself into a small reference, not its internals', async () => {
    const wire = (await toWire(mockBot.bot)) as Record<string, unknown>
    assert.equal(wire.type, 'Wechaty')
    assert.equal(typeof wire.id, 'string')
  })
})
