/**
 * Poison events (issue 11 item 7): an event larger than the server's frame limit must not close
 * the connection on every reconnect and block everything behind it. A real Socket.IO server with
 * a small `maxHttpBufferSize` stands in for the Python one (Engine.IO announces the limit in its
 * handshake, as python-engineio does).
 */
import assert from 'node:assert/strict'
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, afterEach, describe, it } from 'node:test'
import { Server } from 'socket.io'
import { serveHandshake } from './handshake-server.js'
import { Bridge } from '../src/bridge.js'
import { DeadLetters } from '../src/deadletters.js'
import { silentLogger } from '../src/log.js'
import { Outbox } from '../src/outbox.js'
import type { EventEnvelope } from '../src/protocol.js'
import { WireLimit } from '../src/wirelimit.js'
import { sleep } from './helpers.js'

const LIMIT = 64 * 1024
const dir = mkdtempSync(join(tmpdir(), 'metapuppet-poison-'))
after(() => rmSync(dir, { recursive: true, force: true }))
const cleanups: Array<() => unknown> = []
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup()
})
let n = 0

interface Stand {
  url: string
  received: EventEnvelope[]
  connections: number
}

async function standIn(maxHttpBufferSize = LIMIT): Promise<Stand> {
  const http = createServer()
  const io = new Server(http, { maxHttpBufferSize })
  serveHandshake(io, { token: 'good' })
  const stand: Stand = { url: '', received: [], connections: 0 }
  io.on('connection', (socket) => {
    stand.connections++
    socket.on('event', (envelope: EventEnvelope, ack?: (a: unknown) => void) => {
      stand.received.push(envelope)
      ack?.({ ok: true })
    })
  })
  await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve))
  stand.url = `http://127.0.0.1:${(http.address() as AddressInfo).port}`
  cleanups.push(async () => {
    io.close()
    await new Promise((resolve) => http.close(resolve))
  })
  return stand
}

function message(id: string, text: string): EventEnvelope {
  return { id, bot: 'b', name: 'message', payload: { text }, ts: Date.now() }
}

function bridgeFor(url: string, options: { outbox?: Outbox; deadLetters?: DeadLetters; wireLimit?: WireLimit } = {}): Bridge {
  const bridge = new Bridge({
    url,
    token: 'good',
    botName: 'b',
    log: silentLogger,
    executor: { run: async () => ({ ok: true, result: null }) },
    reconnectDelayMs: 20,
    reconnectDelayMaxMs: 50,
    heartbeatMs: 0,
    onFatal: () => {},
    ...options,
  })
  cleanups.push(() => bridge.close())
  return bridge
}

async function until(condition: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!condition()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`)
    await sleep(10)
  }
}

describe('poison events', () => {
  it('learns the frame limit from the handshake and dead-letters a larger event; the stream goes on', async () => {
    const server = await standIn()
    const path = join(dir, `case-${++n}`, 'dead-letters.jsonl')
    const deadLetters = new DeadLetters({ path, log: silentLogger })
    const bridge = bridgeFor(server.url, { deadLetters })
    bridge.start()
    await until(() => bridge.connected, 'a connection')
    assert.equal(bridge.wireLimit.bytes, LIMIT)
    assert.equal(bridge.wireLimit.source, 'handshake')

    bridge.send(message('m1', 'before'))
    bridge.send(message('huge', 'x'.repeat(3 * LIMIT)))
    for (let i = 2; i <= 5; i++) bridge.send(message(`m${i}`, `after ${i}`))
    await until(() => server.received.filter((e) => e.name === 'message').length === 5, 'the five small messages')
    await until(() => server.received.some((e) => e.name === 'error'), 'the error event')

    assert.deepEqual(server.received.filter((e) => e.name === 'message').map((e) => e.id), ['m1', 'm2', 'm3', 'm4', 'm5'])
    const error = server.received.find((e) => e.name === 'error')!
    assert.equal(error.payload.name, 'EventTooLarge')
    const event = error.payload.event as { id: string; name: string; size: number; limit: number }
    assert.equal(event.id, 'huge')
    assert.equal(event.name, 'message')
    assert.equal(event.limit, LIMIT)
    assert.ok(event.size > 3 * LIMIT, String(event.size))
    assert.match(String(error.payload.message), /event huge \(message, about \d+ bytes\) is larger than the server's frame limit of 65536 bytes/)
    assert.equal(error.payload.dead_letter, path)
    await until(() => bridge.outbox.size === 0, 'every ack')
    assert.equal(server.connections, 1, 'the connection was never dropped')

    const records = readFileSync(path, 'utf8').trim().split('\n').map((l) => JSON.parse(l))
    assert.equal(records.length, 1)
    assert.equal(records[0].id, 'huge')
    assert.equal(records[0].reason, 'too_large_for_server')
    assert.equal(records[0].envelope.payload.text.length, 3 * LIMIT)
    assert.equal(statSync(path).mode & 0o777, 0o600)
    assert.equal(statSync(join(dir, `case-${n}`)).mode & 0o777, 0o700)
  })

  it('dead-letters an oversized event left in the outbox file by an earlier run, then sends the rest', async () => {
    const server = await standIn()
    const folder = join(dir, `case-${++n}`)
    const outboxPath = join(folder, 'outbox.jsonl')
    const lines = [message('old-1', 'one'), message('old-huge', 'y'.repeat(2 * LIMIT)), message('old-2', 'two')]
    new Outbox({ path: outboxPath, maxEvents: 100, maxBytes: 2 ** 30, log: silentLogger }).close()
    writeFileSync(outboxPath, lines.map((e) => `${JSON.stringify({ e })}\n`).join(''))
    const outbox = new Outbox({ path: outboxPath, maxEvents: 100, maxBytes: 2 ** 30, log: silentLogger })
    assert.equal(outbox.size, 3)
    const deadLetters = new DeadLetters({ path: join(folder, 'dead-letters.jsonl'), log: silentLogger })
    const bridge = bridgeFor(server.url, { outbox, deadLetters })
    bridge.start()
    await until(() => server.received.filter((e) => e.name !== 'error').length === 2 && server.received.some((e) => e.name === 'error'), 'old-1, old-2 and the error')
    assert.deepEqual(server.received.filter((e) => e.name === 'message').map((e) => e.id), ['old-1', 'old-2'])
    assert.equal(bridge.stats.deadLettered, 1)
    await until(() => outbox.size === 0, 'an empty outbox')
    await sleep(200)
    assert.equal(server.connections, 1)
  })

  it('dead-letters an event larger than the whole outbox instead of evicting every older one', async () => {
    const folder = join(dir, `case-${++n}`)
    const outbox = new Outbox({ path: join(folder, 'outbox.jsonl'), maxEvents: 100, maxBytes: 4096, log: silentLogger })
    const deadLetters = new DeadLetters({ path: join(folder, 'dead-letters.jsonl'), log: silentLogger })
    // Not connected: everything stays in the outbox.
    const bridge = bridgeFor('http://127.0.0.1:9', { outbox, deadLetters, wireLimit: new WireLimit(LIMIT) })
    bridge.send(message('a', 'small'))
    bridge.send(message('b', 'small'))
    bridge.send(message('big', 'z'.repeat(8192)))
    assert.deepEqual(outbox.pending().filter((e) => e.envelope.name === 'message').map((e) => e.envelope.id), ['a', 'b'])
    assert.equal(outbox.has('big'), false)
    const record = JSON.parse(readFileSync(join(folder, 'dead-letters.jsonl'), 'utf8'))
    assert.equal(record.reason, 'too_large_for_outbox')
    assert.equal(record.limit, 4096)
    // The error event naming it waits in the outbox like any other event.
    const error = outbox.pending().find((e) => e.envelope.name === 'error')
    assert.equal((error?.envelope.payload.event as { id: string }).id, 'big')
  })
})

describe('dead letters file', () => {
  it('is bounded: the oldest records go first, and a record larger than the bound keeps a preview', () => {
    const path = join(dir, `case-${++n}`, 'dead.jsonl')
    const letters = new DeadLetters({ path, log: silentLogger, maxBytes: 4096, maxRecords: 3 })
    const add = (id: string, size: number): string | null =>
      letters.add({ reason: 'too_large_for_server', envelope: message(id, 'q'.repeat(size)), size, limit: 1 })
    for (const id of ['r1', 'r2', 'r3', 'r4']) assert.equal(add(id, 100), path)
    let ids = readFileSync(path, 'utf8').trim().split('\n').map((l) => JSON.parse(l).id)
    assert.deepEqual(ids, ['r2', 'r3', 'r4'], 'at most 3 records')
    add('r5', 1500)
    add('r6', 1500)
    ids = readFileSync(path, 'utf8').trim().split('\n').map((l) => JSON.parse(l).id)
    assert.ok(statSync(path).size <= 4096, String(statSync(path).size))
    assert.deepEqual(ids.slice(-2), ['r5', 'r6'])
    add('giant', 100_000)
    const last = JSON.parse(readFileSync(path, 'utf8').trim().split('\n').pop()!)
    assert.equal(last.id, 'giant')
    assert.equal(last.envelope, null)
    assert.equal(last.preview.length, 4096)
    assert.ok(statSync(path).size <= 4096 + 5000)
    assert.equal(letters.stats.summarised, 1)
  })
})
