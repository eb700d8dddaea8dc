/**
 * Snippets that never yield (issue 11 item 8): the real client process (mock puppet) must stop
 * them at their timeout and keep serving, for a loop in the synchronous part and one after an
 * `await`. Results too large for the server's frame limit fail that call only.
 */
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, it } from 'node:test'
import type { ExecResponse } from '../src/protocol.js'
import { standInServer, startClient, until, type ClientProcess, type StandIn } from './client-process.js'

const dir = mkdtempSync(join(tmpdir(), 'metapuppet-watchdog-'))
const cleanups: Array<() => unknown> = []
after(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup()
  rmSync(dir, { recursive: true, force: true })
})

async function startBot(server: StandIn, client: Record<string, unknown> = {}): Promise<ClientProcess> {
  const configPath = join(dir, `config-${cleanups.length}.json`)
  writeFileSync(
    configPath,
    JSON.stringify({
      server: { token: 'good', port: server.port, data_dir: join(dir, 'data') },
      client: { bot: 'watchdog-bot', heartbeat_ms: 60_000, snippet_stall_ms: 1_000, ...client },
    }),
  )
  const process = startClient(configPath)
  cleanups.push(async () => {
    process.child.kill('SIGKILL')
    await process.exited()
  })
  await until(() => server.named('login').length > 0 && server.sockets.length > 0, 'the login', process.log)
  return process
}

function exec(server: StandIn, code: string, timeoutMs: number, args: unknown = {}): Promise<ExecResponse> {
  const socket = server.sockets[server.sockets.length - 1]!
  return socket.timeout(timeoutMs + 20_000).emitWithAck('exec', { code, args, timeout_ms: timeoutMs }) as Promise<ExecResponse>
}

it('stops a snippet that never yields, in its synchronous part or after an await, and keeps serving', { timeout: 120_000 }, async () => {
  const server = await standInServer('good')
  cleanups.push(() => server.close())
  const client = await startBot(server)

  // A call in flight when the loop blocks finishes once it is stopped.
  const before = exec(server, 'await new Promise((r) => setTimeout(r, 50)); return "earlier call"', 30_000)
  let started = Date.now()
  const spin = await exec(server, 'while (true) {}', 500)
  const syncStop = Date.now() - started
  assert.equal(spin.ok, false)
  const error = (spin as { error: { kind: string; message: string } }).error
  assert.equal(error.kind, 'timeout')
  assert.match(error.message, /did not finish within 500 ms: it kept the client busy for \d+ ms without yielding .* and was stopped/)
  assert.deepEqual(await before, { ok: true, result: 'earlier call' })
  assert.deepEqual(await exec(server, 'return 40 + 2', 5_000), { ok: true, result: 42 })

  started = Date.now()
  const spinLater = await exec(server, 'await new Promise((r) => setTimeout(r, 10)); for (;;) {}', 500)
  const asyncStop = Date.now() - started
  assert.equal(spinLater.ok, false)
  assert.match((spinLater as { error: { message: string } }).error.message, /and was stopped/)
  assert.deepEqual(await exec(server, 'return bot.isLoggedIn', 5_000), { ok: true, result: true })
  // Still forwarding events: a message from a mock contact arrives.
  await exec(server, 'const c = mock.contact("Alice"); mock.say(c, {text: "still here"}, null); return c', 5_000)
  await until(() => server.named('message').some((e) => e.payload.text === 'still here'), 'the message after the stops', client.log)
  assert.match(client.log(), /ERROR snippet call #\d+ has kept the client busy for \d+ ms without yielding, past its timeout: stopping it/)
  process.stdout.write(`# watchdog: synchronous loop answered after ${syncStop} ms (timeout 500), loop after an await after ${asyncStop} ms (timeout 500, stall 1000, grace 1000)\n`)
  assert.ok(syncStop < 5_000, String(syncStop))
  assert.ok(asyncStop < 10_000, String(asyncStop))
})

it('fails a result larger than the frame limit the server announced, not the connection', { timeout: 120_000 }, async () => {
  const server = await standInServer('good') // socket.io's default maxHttpBufferSize: 1e6 bytes
  cleanups.push(() => server.close())
  await startBot(server)
  const slow = exec(server, 'await new Promise((r) => setTimeout(r, 300)); return "pending call"', 30_000)
  // 400 000 characters of 3 bytes each: 1.2 MB of JSON, more than 1e6, though fewer characters.
  const big = await exec(server, 'return "é中".repeat(200_000)', 10_000)
  assert.equal(big.ok, false)
  const error = (big as { error: { kind: string; message: string } }).error
  assert.equal(error.kind, 'serialize')
  assert.match(error.message, /its JSON is 1000002 bytes .* over the cap of 999936 bytes/)
  assert.deepEqual(await slow, { ok: true, result: 'pending call' })
  assert.equal(server.sockets.length, 1, 'never disconnected')
  assert.deepEqual(await exec(server, 'return "x".repeat(900_000).length', 5_000), { ok: true, result: 900_000 })
})
