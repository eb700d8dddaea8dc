/**
 * The bridge against a real Socket.IO server (socket.io, Node) standing in for the Python one.
 */
import assert from 'node:assert/strict'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { afterEach, describe, it } from 'node:test'
import { Server, type Socket as ServerSocket } from 'socket.io'
import { Bridge } from '../src/bridge.js'
import { Executor } from '../src/executor.js'
import { silentLogger } from '../src/log.js'
import type { EventEnvelope } from '../src/protocol.js'
import { sleep } from './helpers.js'

interface Harness {
  io: Server
  url: string
  /** Server-side sockets, in connection order. */
  sockets: ServerSocket[]
  /** Events the server received, in order (duplicates included). */
  received: EventEnvelope[]
  /** What the server answers to an event; default {ok: true}; undefined = no answer. */
  answer: (envelope: EventEnvelope, socket: ServerSocket) => unknown
  /** Middleware verdict per connection attempt; default accepts the "good" token. */
  admit: (auth: Record<string, unknown>, attempt: number) => string | null
  close(): Promise<void>
}

const cleanups: Array<() => unknown> = []
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup()
})

async function startServer(): Promise<Harness> {
  const http = createServer()
  const io = new Server(http)
  const harness: Harness = {
    io,
    url: '',
    sockets: [],
    received: [],
    answer: () => ({ ok: true }),
    admit: (auth) => (auth.token === 'good' ? null : 'invalid token'),
    close: async () => {
      io.close()
      await new Promise((resolve) => http.close(resolve))
    },
  }
  let attempts = 0
  io.use((socket, next) => {
    const refusal = harness.admit(socket.handshake.auth, ++attempts)
    next(refusal === null ? undefined : new Error(refusal))
  })
  io.on('connection', (socket) => {
    harness.sockets.push(socket)
    socket.on('event', (envelope: EventEnvelope, ack?: (a: unknown) => void) => {
      harness.received.push(envelope)
      const answer = harness.answer(envelope, socket)
      if (answer !== undefined && typeof ack === 'function') ack(answer)
    })
  })
  await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve))
  harness.url = `http://127.0.0.1:${(http.address() as AddressInfo).port}`
  cleanups.push(() => harness.close())
  return harness
}

function startBridge(
  url: string,
  overrides: { token?: string; heartbeatMs?: number; onFatal?: (m: string, c: number) => void } = {},
): Bridge {
  const bridge = new Bridge({
    url,
    token: overrides.token ?? 'good',
    botName: 'bridge-bot',
    log: silentLogger,
    executor: new Executor({ bot: null, log: silentLogger }),
    reconnectDelayMs: 20,
    reconnectDelayMaxMs: 50,
    heartbeatMs: overrides.heartbeatMs ?? 0,
    onFatal: overrides.onFatal ?? ((message) => assert.fail(`unexpected fatal: ${message}`)),
  })
  cleanups.push(() => bridge.close())
  return bridge
}

function envelope(n: number, name: EventEnvelope['name'] = 'message'): EventEnvelope {
  return { id: `event-${n}`, bot: 'bridge-bot', name, payload: { n }, ts: Date.now() }
}

async function until(condition: () => boolean, what: string, timeoutMs = 3_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!condition()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`)
    await sleep(5)
  }
}

describe('Bridge', () => {
  it('authenticates as a puppet and answers exec and echo through acks', async () => {
    const server = await startServer()
    const bridge = startBridge(server.url)
    bridge.start()
    await until(() => server.sockets.length === 1, 'a connection')
    const socket = server.sockets[0]!
    assert.deepEqual(socket.handshake.auth, { token: 'good', role: 'puppet', protocol: 1, bot: 'bridge-bot' })
    assert.deepEqual(await socket.timeout(2000).emitWithAck('exec', { code: 'return args.x + 1', args: { x: 41 } }), {
      ok: true,
      result: 42,
    })
    const bad = await socket.timeout(2000).emitWithAck('exec', { code: '' })
    assert.equal(bad.ok, false)
    assert.equal(bad.error.kind, 'bad_request')
    const thrown = await socket.timeout(2000).emitWithAck('exec', { code: 'throw new Error("nope")' })
    assert.equal(thrown.error.kind, 'runtime')
    const data = { a: [1, 'two', { three: null }], s: '`${x}`' }
    assert.deepEqual(await socket.timeout(2000).emitWithAck('echo', data), data)
  })

  it('sends events queued while offline, in order, once connected', async () => {
    const server = await startServer()
    const bridge = startBridge(server.url)
    for (let n = 1; n <= 5; n++) bridge.send(envelope(n))
    assert.equal(bridge.outbox.size, 5)
    bridge.start()
    await until(() => bridge.outbox.size === 0, 'the outbox to drain')
    assert.deepEqual(server.received.map((e) => e.id), ['event-1', 'event-2', 'event-3', 'event-4', 'event-5'])
    bridge.send(envelope(6))
    await until(() => server.received.length === 6 && bridge.outbox.size === 0, 'event 6')
  })

  it('re-sends unacknowledged events after a reconnect', async () => {
    const server = await startServer()
    const bridge = startBridge(server.url)
    server.answer = () => undefined // first connection: never acknowledge
    bridge.start()
    await until(() => bridge.connected, 'a connection')
    for (let n = 1; n <= 3; n++) bridge.send(envelope(n))
    await until(() => server.received.length === 3, 'three events')
    assert.equal(bridge.outbox.size, 3)

    server.answer = () => ({ ok: true })
    server.sockets[0]!.conn.close() // drop the transport, as a network failure would
    await until(() => bridge.outbox.size === 0, 'the re-sent events to be acknowledged')
    assert.deepEqual(
      server.received.map((e) => e.id),
      ['event-1', 'event-2', 'event-3', 'event-1', 'event-2', 'event-3'],
    )
    assert.equal(server.sockets.length, 2)
  })

  it('drops an event the server rejects instead of re-sending it', async () => {
    const server = await startServer()
    const bridge = startBridge(server.url)
    server.answer = (e) =>
      e.id === 'event-2' ? { ok: false, error: { kind: 'bad_request', name: 'BadRequest', message: 'no' } } : { ok: true }
    bridge.start()
    await until(() => bridge.connected, 'a connection')
    for (let n = 1; n <= 3; n++) bridge.send(envelope(n))
    await until(() => bridge.outbox.size === 0, 'all answers')
    server.sockets[0]!.conn.close()
    await until(() => server.sockets.length === 2 && bridge.connected, 'a reconnect')
    await sleep(50)
    assert.deepEqual(server.received.map((e) => e.id), ['event-1', 'event-2', 'event-3'])
  })

  it('sends heartbeats only while connected and never stores them', async () => {
    const server = await startServer()
    const bridge = startBridge(server.url, { heartbeatMs: 30 })
    bridge.send(envelope(1, 'heartbeat'))
    assert.equal(bridge.outbox.size, 0)
    bridge.start()
    await until(() => server.received.some((e) => e.name === 'heartbeat'), 'a client heartbeat')
    const beat = server.received.find((e) => e.name === 'heartbeat')!
    assert.equal(beat.payload.source, 'client')
    assert.equal(typeof beat.payload.uptime_s, 'number')
    assert.ok(!server.received.some((e) => e.id === 'event-1'))
    assert.equal(bridge.outbox.size, 0)
  })

  it('gives up with exit code 2 when the server refuses the token', async () => {
    const server = await startServer()
    let fatal: { message: string; code: number } | undefined
    const bridge = startBridge(server.url, { token: 'bad', onFatal: (message, code) => { fatal = { message, code } } })
    bridge.start()
    await until(() => fatal !== undefined, 'the refusal')
    assert.equal(fatal?.code, 2)
    assert.match(fatal?.message ?? '', /refused this client: invalid token/)
    assert.ok(!(fatal?.message ?? '').includes('bad'), 'the token must not be printed')
  })

  it('keeps retrying after other refusals', async () => {
    const server = await startServer()
    server.admit = (_auth, attempt) => (attempt < 3 ? 'server busy' : null)
    const bridge = startBridge(server.url)
    bridge.start()
    await until(() => bridge.connected, 'a connection after two refusals')
  })

  it('keeps retrying while the server is down', async () => {
    const server = await startServer()
    const url = server.url
    await server.close()
    const bridge = startBridge(url)
    bridge.start()
    bridge.send(envelope(1))
    await sleep(150)
    assert.equal(bridge.connected, false)
    assert.equal(bridge.outbox.size, 1)
  })
})
