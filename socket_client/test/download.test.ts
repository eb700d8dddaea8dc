/**
 * `FileBox.from_url` downloads (issue 11 item 9) against local HTTP servers: private addresses
 * refused unless configured, every hop of a redirect checked, the resolved address pinned, and
 * every way a server can make a download endless cut off.
 */
import assert from 'node:assert/strict'
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo, Socket } from 'node:net'
import { after, describe, it } from 'node:test'
import { blockedRange, download, DownloadError, type ResolvedAddress } from '../src/download.js'
import { Executor } from '../src/executor.js'
import { silentLogger } from '../src/log.js'
import { sleep } from './helpers.js'

interface Local {
  port: number
  url: string
  requests: string[]
  /** Sockets the server saw closed (the client gave up), by request path. */
  closed: string[]
}

const servers: Array<() => Promise<void>> = []
after(async () => {
  for (const close of servers) await close()
})

async function local(handler: (req: IncomingMessage, res: ServerResponse, server: Local) => void): Promise<Local> {
  const sockets = new Set<Socket>()
  const state: Local = { port: 0, url: '', requests: [], closed: [] }
  const http = createServer((req, res) => {
    state.requests.push(req.url ?? '')
    req.socket.once('close', () => state.closed.push(req.url ?? ''))
    handler(req, res, state)
  })
  http.on('connection', (socket) => {
    sockets.add(socket)
    socket.once('close', () => sockets.delete(socket))
  })
  await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve))
  state.port = (http.address() as AddressInfo).port
  state.url = `http://127.0.0.1:${state.port}`
  servers.push(
    () =>
      new Promise((resolve) => {
        for (const socket of sockets) socket.destroy()
        http.close(() => resolve())
      }),
  )
  return state
}

const allowLoopback = { allowHosts: ['127.0.0.1'] }

async function refusal(promise: Promise<unknown>): Promise<DownloadError> {
  try {
    await promise
  } catch (e) {
    assert.ok(e instanceof DownloadError, String(e))
    return e
  }
  assert.fail('the download was not refused')
}

describe('download policy', () => {
  it('classifies addresses, also inside IPv6 forms that carry an IPv4 one', () => {
    const cases: Array<[string, string | null]> = [
      ['127.0.0.1', 'loopback'],
      ['127.8.9.10', 'loopback'],
      ['10.1.2.3', 'private'],
      ['172.31.255.255', 'private'],
      ['172.32.0.1', null],
      ['192.168.1.1', 'private'],
      ['169.254.169.254', 'link-local'],
      ['100.64.0.1', 'shared (CGNAT)'],
      ['0.0.0.0', '"this network"'],
      ['224.0.0.1', 'multicast'],
      ['255.255.255.255', 'reserved'],
      ['8.8.8.8', null],
      ['::1', 'loopback'],
      ['::', 'unspecified'],
      ['fe80::1%eth0', 'link-local'],
      ['fd12:3456::1', 'private (unique local)'],
      ['::ffff:127.0.0.1', 'loopback'],
      ['::ffff:7f00:1', 'loopback'],
      ['::ffff:8.8.8.8', null],
      ['64:ff9b::a00:1', 'private'],
      ['2002:c0a8:101::1', 'private'],
      ['2606:4700:4700::1111', null],
    ]
    for (const [address, expected] of cases) assert.equal(blockedRange(address), expected, address)
  })

  it('refuses loopback and private addresses by default, by address and by name, before any request', async () => {
    const server = await local((_req, res) => res.end('secret'))
    let error = await refusal(download(`${server.url}/admin?token=abc`))
    assert.equal(error.code, 'blocked_address')
    assert.match(error.message, /cannot download http:\/\/127\.0\.0\.1:\d+\/admin: 127\.0\.0\.1, a loopback address; add the host to client\.file_download\.allow_hosts/)
    assert.doesNotMatch(error.message, /token=abc/, 'the query string may hold a secret')
    error = await refusal(download(`http://localhost:${server.port}/`))
    assert.equal(error.code, 'blocked_address')
    assert.match(error.message, /localhost resolves to (127\.0\.0\.1|::1), a loopback address/)
    error = await refusal(download('http://169.254.169.254/latest/meta-data/'))
    assert.match(error.message, /a link-local address/)
    // One private address among public ones is enough to refuse (all are checked).
    const mixed = async (): Promise<ResolvedAddress[]> => [
      { address: '93.184.216.34', family: 4 },
      { address: '10.0.0.5', family: 4 },
    ]
    error = await refusal(download('http://mixed.example/', { resolve: mixed }))
    assert.match(error.message, /mixed\.example resolves to 10\.0\.0\.5, a private address/)
    assert.equal((await refusal(download('file:///etc/passwd'))).code, 'bad_url')
    assert.equal((await refusal(download('ftp://example.org/x'))).code, 'bad_url')
    assert.deepEqual(server.requests, [], 'no request ever reached the private server')
  })

  it('downloads from a configured host (by address or by name)', async () => {
    const server = await local((req, res) => {
      res.setHeader('content-disposition', 'attachment; filename="report.pdf"')
      res.end(`bytes of ${req.url}`)
    })
    const got = await download(`${server.url}/files/1`, { policy: allowLoopback })
    assert.equal(got.data.toString(), 'bytes of /files/1')
    assert.equal(got.fileName, 'report.pdf')
    const byName = await download(`http://localhost:${server.port}/x`, {
      policy: { allowHosts: ['localhost'] },
      resolve: async () => [{ address: '127.0.0.1', family: 4 }],
    })
    assert.equal(byName.data.toString(), 'bytes of /x')
    const byRange = await download(`${server.url}/y`, { policy: { allowHosts: ['127.0.0.0/8'] } })
    assert.equal(byRange.data.toString(), 'bytes of /y')
  })

  it('checks every hop of a redirect chain and bounds its length', async () => {
    const target = await local((_req, res) => res.end('private target'))
    const hops = await local((req, res, self) => {
      const n = Number(req.url?.slice(1))
      if (req.url === '/to-ip') {
        res.writeHead(302, { location: `${target.url}/` })
        res.end()
      } else if (n > 0) {
        res.writeHead(n % 2 === 0 ? 301 : 307, { location: `/${n - 1}` })
        res.end()
      } else {
        res.end(`arrived after ${self.requests.length - 1} redirects`)
      }
    })
    const got = await download(`${hops.url}/5`, { policy: { allowHosts: ['127.0.0.1'], maxRedirects: 5 } })
    assert.equal(got.data.toString(), 'arrived after 5 redirects')
    assert.match(got.url, /\/0$/)
    const tooMany = await refusal(download(`${hops.url}/6`, { policy: { allowHosts: ['127.0.0.1'], maxRedirects: 5 } }))
    assert.equal(tooMany.code, 'too_many_redirects')
    // Allowed by name only: a redirect to a private address (the same machine) is refused.
    const viaName = await refusal(
      download(`http://files.local:${hops.port}/to-ip`, {
        policy: { allowHosts: ['files.local'] },
        resolve: async () => [{ address: '127.0.0.1', family: 4 }],
      }),
    )
    assert.equal(viaName.code, 'blocked_address')
    assert.match(viaName.message, /127\.0\.0\.1, a loopback address/)
    assert.deepEqual(target.requests, [])
  })

  it('connects to the address it checked, whatever the name resolves to next (DNS rebinding)', async () => {
    const server = await local((_req, res) => res.end('pinned'))
    let lookups = 0
    // First answer: allowed (loopback is configured). Any later one: a private address.
    const rebinding = async (): Promise<ResolvedAddress[]> =>
      ++lookups === 1 ? [{ address: '127.0.0.1', family: 4 }] : [{ address: '10.9.9.9', family: 4 }]
    const got = await download(`http://rebind.example:${server.port}/`, { policy: { allowHosts: ['127.0.0.1'] }, resolve: rebinding })
    assert.equal(got.data.toString(), 'pinned')
    assert.equal(lookups, 1, 'resolved once: the connection used the checked address')
  })

  it('stops an endless body at the size cap, and refuses a declared size over it before the body', async () => {
    const endless = await local((_req, res) => {
      const chunk = Buffer.alloc(64 * 1024, 120)
      const pump = (): void => {
        while (res.write(chunk)) {
          // keep writing until the socket pushes back
        }
        res.once('drain', pump)
      }
      res.on('error', () => {})
      pump()
    })
    const started = Date.now()
    const error = await refusal(download(`${endless.url}/forever`, { policy: { ...allowLoopback, maxBytes: 1024 * 1024 } }))
    assert.equal(error.code, 'too_large')
    assert.match(error.message, /larger than the limit of 1048576 bytes \(client\.file_download\.max_bytes\)/)
    await until(() => endless.closed.includes('/forever'), 'the connection closed')
    process.stdout.write(`# endless body cut after ${Date.now() - started} ms at 1 MiB\n`)

    let sent = 0
    const declared = await local((_req, res) => {
      res.writeHead(200, { 'content-length': String(10 * 1024 * 1024) })
      res.on('error', () => {})
      const chunk = Buffer.alloc(64 * 1024)
      const pump = (): void => {
        while (sent < 10 * 1024 * 1024 && res.write(chunk)) sent += chunk.length
        if (sent < 10 * 1024 * 1024) res.once('drain', pump)
      }
      pump()
    })
    const early = await refusal(download(`${declared.url}/big`, { policy: { ...allowLoopback, maxBytes: 1024 * 1024 } }))
    assert.equal(early.code, 'too_large')
  })

  it('gives up on a server that stops sending (read timeout), headers or body', async () => {
    const silent = await local(() => {
      // never answers
    })
    let started = Date.now()
    let error = await refusal(download(`${silent.url}/`, { policy: { ...allowLoopback, readTimeoutMs: 300 } }))
    assert.equal(error.code, 'read_timeout')
    assert.ok(Date.now() - started < 3_000)
    const stalls = await local((_req, res) => {
      res.writeHead(200)
      res.write('first bytes')
      // then nothing
    })
    started = Date.now()
    error = await refusal(download(`${stalls.url}/`, { policy: { ...allowLoopback, readTimeoutMs: 300 } }))
    assert.equal(error.code, 'read_timeout')
    assert.match(error.message, /no data for 300 ms after 11 bytes/)
    assert.ok(Date.now() - started < 3_000)
  })

  it('stops when the exec call times out (a slow drip never ends the call late)', async () => {
    const drip = await local((_req, res) => {
      res.writeHead(200)
      const timer = setInterval(() => res.write('x'), 50)
      res.on('close', () => clearInterval(timer))
    })
    const executor = new Executor({ bot: null, log: silentLogger, download: allowLoopback })
    const started = Date.now()
    const answer = await executor.run({
      code: 'const box = await metapuppet.fileFromUrl(args.url, { name: "slow.bin" }); return box.name',
      args: { url: `${drip.url}/drip` },
      timeout_ms: 400,
    })
    assert.equal(answer.ok, false)
    assert.equal((answer as { error: { kind: string } }).error.kind, 'timeout')
    await until(() => drip.closed.includes('/drip'), 'the download to stop')
    assert.ok(Date.now() - started < 3_000, `stopped after ${Date.now() - started} ms`)

    const ok = await local((_req, res) => res.end('hello file'))
    const fine = await executor.run({
      code: 'const box = await metapuppet.fileFromUrl(args.url, { name: null }); return { name: box.name, b64: await box.toBase64() }',
      args: { url: `${ok.url}/dir/notes.txt` },
      timeout_ms: 5_000,
    })
    assert.deepEqual(fine, { ok: true, result: { name: 'notes.txt', b64: Buffer.from('hello file').toString('base64') } })
    const refused = await executor.run({
      code: 'return await metapuppet.fileFromUrl(args.url)',
      args: { url: `http://10.0.0.1/x` },
      timeout_ms: 5_000,
    })
    assert.equal(refused.ok, false)
    const wire = (refused as { error: { name: string; code?: string; message: string } }).error
    assert.equal(wire.name, 'DownloadError')
    assert.equal(wire.code, 'blocked_address')
  })
})

async function until(condition: () => boolean, what: string, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!condition()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`)
    await sleep(10)
  }
}
