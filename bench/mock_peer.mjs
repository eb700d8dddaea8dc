// A Node process holding a wechaty-puppet-mock world for bench/closed_loop.py, without
// MetaPuppet in it. Two roles:
//
//   node bench/mock_peer.mjs ceiling <client_dir> <contacts>
//       a Wechaty bot on the mock answers in Node (bot.on('message') reverses the text and
//       says it back): the mock's own ceiling
//   node bench/mock_peer.mjs grpc <client_dir> <contacts> <port> <token>
//       the mock puppet served over gRPC by wechaty-puppet-service's PuppetServer (TLS off,
//       explicit endpoint 127.0.0.1:<port>) for a python-wechaty bot to log in to
//
// The packages come from socket_client/node_modules (<client_dir>), the same ones the
// MetaPuppet client runs. Talks JSON lines: prints {"event": "ready", ...} once the mock
// user exists, {"event": "login"} when the user logged in, and answers each command read
// from stdin, {"id", "op": "run", "args"} (runs bench/closed_loop_driver.js) or
// {"id", "op": "stop"}, with {"id", "ok", "result" | "error"}. Logs go to stderr.
import { readFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { createInterface } from 'node:readline'
import { fileURLToPath, pathToFileURL } from 'node:url'

const [role, clientDir, contactCount, port, token] = process.argv.slice(2)
if (!['ceiling', 'grpc'].includes(role) || !clientDir || !(Number(contactCount) > 0)) {
  process.stderr.write('usage: mock_peer.mjs ceiling|grpc <client_dir> <contacts> [<port> <token>]\n')
  process.exit(2)
}
if (role === 'grpc' && (!(Number(port) > 0) || !token)) {
  process.stderr.write('mock_peer.mjs grpc needs <port> and <token>\n')
  process.exit(2)
}

/** The ESM entry of a package installed in socket_client/node_modules. */
async function load(name) {
  const dir = join(clientDir, 'node_modules', name)
  const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8'))
  const entry = pkg.exports?.['.']?.import ?? pkg.module ?? pkg.main
  return import(pathToFileURL(join(dir, entry)).href)
}

const send = (message) => process.stdout.write(JSON.stringify(message) + '\n')
const AsyncFunction = Object.getPrototypeOf(async () => {}).constructor
const driverPath = join(dirname(fileURLToPath(import.meta.url)), 'closed_loop_driver.js')
const driver = new AsyncFunction('args', 'mocker', readFileSync(driverPath, 'utf8'))
const reverse = (text) => text.split('').reverse().join('')

const { PuppetMock, mock } = await load('wechaty-puppet-mock')
const wechaty = await load('wechaty')
if (!process.env.WECHATY_LOG) wechaty.log.level('warn')

const mocker = new mock.Mocker()
const puppet = new PuppetMock({ mocker })
const user = mocker.createContact({ name: 'Bench Bot' })
const ids = []
for (let i = 0; i < Number(contactCount); i++) {
  ids.push(mocker.createContact({ friend: true, name: `Contact ${i}` }).id)
}
puppet.on('login', () => send({ event: 'login' }))
let stopServer = async () => {}

if (role === 'ceiling') {
  const bot = wechaty.WechatyBuilder.build({ puppet })
  bot.on('error', (e) => process.stderr.write(`bot error: ${e?.message ?? e}\n`))
  bot.on('message', async (message) => {
    if (message.self()) return
    const text = message.text()
    if (!text.startsWith('cl:')) return
    try {
      await message.say(reverse(text))
    } catch (e) {
      process.stderr.write(`say failed: ${e?.message ?? e}\n`)
    }
  })
  await bot.start()
  mocker.login(user)
  stopServer = () => bot.stop()
} else {
  const { PuppetServer } = await load('wechaty-puppet-service')
  puppet.on('error', (e) => process.stderr.write(`puppet error: ${e?.message ?? e}\n`))
  // The python-wechaty client calls stop() then start(); log the mock user in after each
  // start (the event stream replays the login to a client that subscribes later).
  const start = puppet.start.bind(puppet)
  puppet.start = async () => {
    await start()
    if (!puppet.isLoggedIn) mocker.login(user)
  }
  const server = new PuppetServer({
    endpoint: `127.0.0.1:${port}`,
    puppet,
    token,
    tls: { disable: true },
  })
  await server.start()
  stopServer = async () => {
    await server.stop()
    await puppet.stop()
  }
}

send({ event: 'ready', role, pid: process.pid, userId: user.id, ids })

const lines = createInterface({ input: process.stdin })
lines.on('line', async (line) => {
  let request
  try {
    request = JSON.parse(line)
  } catch {
    send({ ok: false, error: `not JSON: ${line.slice(0, 80)}` })
    return
  }
  const { id, op, args } = request
  try {
    if (op === 'run') {
      send({ id, ok: true, result: await driver(args, mocker) })
    } else if (op === 'stop') {
      await Promise.race([stopServer(), new Promise((resolve) => setTimeout(resolve, 3000))])
      send({ id, ok: true, result: null })
      process.exit(0)
    } else {
      send({ id, ok: false, error: `unknown op ${JSON.stringify(op)}` })
    }
  } catch (e) {
    send({ id, ok: false, error: String(e?.stack ?? e) })
  }
})
lines.on('close', () => process.exit(0))
