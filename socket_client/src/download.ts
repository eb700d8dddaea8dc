/**
 * Downloads for `FileBox.from_url` (the `say` snippet's `file_url`): the URL may come from a
 * chat, so the download must not reach into the machine's own network, nor run without bounds.
 *
 * - Only http and https. The host is resolved once per hop and EVERY address it resolves to is
 *   checked: loopback, link-local, private, shared (CGNAT), multicast, reserved and documentation
 *   ranges are refused (also inside IPv4-mapped, NAT64 and 6to4 IPv6 addresses) unless the host
 *   or the address is in `allowHosts`, or `allowPrivate` is set.
 * - The connection goes to the checked address (pinned through the socket's `lookup`), so a DNS
 *   answer that changes between the check and the connect (rebinding) changes nothing. TLS still
 *   checks the certificate against the host name.
 * - Redirects are followed up to `maxRedirects`, each hop checked like the first.
 * - Bounded: `connectTimeoutMs` to connect, `readTimeoutMs` without a byte, `maxBytes` in all
 *   (a larger Content-Length is refused before the body), and the caller's `signal` (the exec
 *   call's timeout) stops it at once.
 *
 * Errors are `DownloadError` with a `code` (copied into the exec error's `code`); their texts
 * show the URL without its query string (it may hold a token).
 */
import { lookup as dnsLookup } from 'node:dns/promises'
import { request as httpRequest, type ClientRequest, type IncomingMessage } from 'node:http'
import { request as httpsRequest } from 'node:https'
import { isIP, type LookupFunction } from 'node:net'
import { FileBox } from 'file-box'

export interface DownloadPolicy {
  /** Host names (`example.org`, `*.example.org`), addresses or CIDR ranges that may be private. */
  allowHosts: string[]
  /** Allow every address (a bot on a trusted network). */
  allowPrivate: boolean
  maxBytes: number
  connectTimeoutMs: number
  readTimeoutMs: number
  maxRedirects: number
}

export const DEFAULT_DOWNLOAD_POLICY: Readonly<DownloadPolicy> = {
  allowHosts: [],
  allowPrivate: false,
  maxBytes: 64 * 1024 * 1024,
  connectTimeoutMs: 10_000,
  readTimeoutMs: 30_000,
  maxRedirects: 5,
}

export type DownloadErrorCode =
  | 'bad_url'
  | 'blocked_address'
  | 'dns'
  | 'connect_timeout'
  | 'read_timeout'
  | 'too_large'
  | 'too_many_redirects'
  | 'aborted'
  | 'network'
  | `http_${number}`

export class DownloadError extends Error {
  constructor(
    readonly code: DownloadErrorCode,
    message: string,
  ) {
    super(message)
    this.name = 'DownloadError'
  }
}

export interface ResolvedAddress {
  address: string
  family: 4 | 6
}

export interface DownloadOptions {
  policy?: Partial<DownloadPolicy>
  /** Stops the download (the exec call timed out). */
  signal?: AbortSignal
  headers?: Record<string, string>
  /** Name resolution (tests); default: the system resolver, every address. */
  resolve?: (host: string) => Promise<ResolvedAddress[]>
}

export interface Downloaded {
  data: Buffer
  /** The URL the bytes came from, after redirects. */
  url: string
  contentType: string | null
  /** From Content-Disposition, when the server gave one. */
  fileName: string | null
}

/** Downloads `url` under the policy; throws DownloadError. */
export async function download(url: string, options: DownloadOptions = {}): Promise<Downloaded> {
  const policy: DownloadPolicy = { ...DEFAULT_DOWNLOAD_POLICY, ...options.policy }
  const resolve = options.resolve ?? systemResolve
  let current = parseUrl(url)
  for (let hop = 0; ; hop++) {
    throwIfAborted(options.signal, current)
    const address = await checkedAddress(current, policy, resolve)
    throwIfAborted(options.signal, current)
    const response = await fetchOnce(current, address, policy, options)
    const status = response.statusCode ?? 0
    if (REDIRECTS.has(status) && typeof response.headers.location === 'string') {
      response.destroy()
      if (hop >= policy.maxRedirects) {
        throw new DownloadError('too_many_redirects', `cannot download ${shown(url)}: more than ${policy.maxRedirects} redirects`)
      }
      let next: URL
      try {
        next = new URL(response.headers.location, current)
      } catch {
        throw new DownloadError('bad_url', `cannot download ${shown(url)}: ${shown(current)} redirects to a bad URL`)
      }
      current = parseUrl(next.href)
      continue
    }
    if (status < 200 || status > 299) {
      response.destroy()
      throw new DownloadError(`http_${status}`, `cannot download ${shown(current)}: the server answered HTTP ${status}`)
    }
    const data = await readBody(response, current, policy, options.signal)
    return {
      data,
      url: current.href,
      contentType: typeof response.headers['content-type'] === 'string' ? response.headers['content-type'] : null,
      fileName: dispositionName(response.headers['content-disposition']),
    }
  }
}

/** A FileBox holding the downloaded bytes (base64-backed: the mock puppet cannot send a buffer one). */
export async function fileBoxFromUrl(url: string, name: string | null, options: DownloadOptions = {}): Promise<FileBox> {
  const got = await download(url, options)
  let fallback = new URL(got.url).pathname.split('/').pop() ?? ''
  try {
    fallback = decodeURIComponent(fallback)
  } catch {
    // keep it as it is
  }
  return FileBox.fromBase64(got.data.toString('base64'), name ?? got.fileName ?? (fallback || 'file'))
}

const REDIRECTS = new Set([301, 302, 303, 307, 308])

function parseUrl(url: string): URL {
  let parsed: URL
  try {
    parsed = new URL(url)
  } catch {
    throw new DownloadError('bad_url', `cannot download ${JSON.stringify(url.slice(0, 200))}: not a URL`)
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') {
    throw new DownloadError('bad_url', `cannot download ${shown(parsed)}: only http and https URLs are allowed`)
  }
  return parsed
}

/** The URL without credentials, query or fragment (they may hold secrets). */
function shown(url: URL | string): string {
  try {
    const u = typeof url === 'string' ? new URL(url) : url
    return `${u.protocol}//${u.host}${u.pathname}`
  } catch {
    return '<a bad URL>'
  }
}

function throwIfAborted(signal: AbortSignal | undefined, url: URL): void {
  if (signal?.aborted === true) throw new DownloadError('aborted', `download of ${shown(url)} stopped: the call timed out`)
}

async function systemResolve(host: string): Promise<ResolvedAddress[]> {
  const answers = await dnsLookup(host, { all: true, verbatim: true })
  return answers.map((a) => ({ address: a.address, family: a.family === 6 ? 6 : 4 }))
}

/** Resolves the URL's host, checks every address, returns the one to connect to. */
async function checkedAddress(url: URL, policy: DownloadPolicy, resolve: (host: string) => Promise<ResolvedAddress[]>): Promise<ResolvedAddress> {
  const host = url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname
  let addresses: ResolvedAddress[]
  const literal = isIP(host)
  if (literal !== 0) {
    addresses = [{ address: host, family: literal === 6 ? 6 : 4 }]
  } else {
    try {
      addresses = await resolve(host)
    } catch (e) {
      throw new DownloadError('dns', `cannot download ${shown(url)}: cannot resolve ${host} (${e instanceof Error ? e.message : String(e)})`)
    }
    if (addresses.length === 0) throw new DownloadError('dns', `cannot download ${shown(url)}: ${host} has no address`)
  }
  if (!policy.allowPrivate && !hostAllowed(host, policy.allowHosts)) {
    for (const { address } of addresses) {
      const range = blockedRange(address)
      if (range !== null && !addressAllowed(address, policy.allowHosts)) {
        throw new DownloadError(
          'blocked_address',
          `cannot download ${shown(url)}: ${host === address ? address : `${host} resolves to ${address}`}, a ${range} address; ` +
            'add the host to client.file_download.allow_hosts to allow it',
        )
      }
    }
  }
  return addresses[0]!
}

function hostAllowed(host: string, allowed: readonly string[]): boolean {
  const name = host.toLowerCase().replace(/\.$/, '')
  return allowed.some((entry) => {
    const e = entry.toLowerCase().replace(/\.$/, '')
    if (e.startsWith('*.')) return name.endsWith(e.slice(1))
    return e === name && isIP(e) === 0
  })
}

function addressAllowed(address: string, allowed: readonly string[]): boolean {
  const bytes = ipBytes(address)
  if (bytes === null) return false
  return allowed.some((entry) => {
    const [base, bits] = entry.split('/')
    const net = ipBytes(base ?? '')
    if (net === null || net.length !== bytes.length) return false
    const prefix = bits === undefined ? net.length * 8 : Number(bits)
    return Number.isInteger(prefix) && prefix >= 0 && prefix <= net.length * 8 && matches(bytes, net, prefix)
  })
}

/** IPv4 and IPv6 ranges that are not the public internet, with a word for each. */
const BLOCKED: ReadonlyArray<[string, number, string]> = [
  ['0.0.0.0', 8, '"this network"'],
  ['10.0.0.0', 8, 'private'],
  ['100.64.0.0', 10, 'shared (CGNAT)'],
  ['127.0.0.0', 8, 'loopback'],
  ['169.254.0.0', 16, 'link-local'],
  ['172.16.0.0', 12, 'private'],
  ['192.0.0.0', 24, 'reserved'],
  ['192.0.2.0', 24, 'documentation'],
  ['192.88.99.0', 24, 'reserved'],
  ['192.168.0.0', 16, 'private'],
  ['198.18.0.0', 15, 'benchmarking'],
  ['198.51.100.0', 24, 'documentation'],
  ['203.0.113.0', 24, 'documentation'],
  ['224.0.0.0', 4, 'multicast'],
  ['240.0.0.0', 4, 'reserved'],
  ['::', 128, 'unspecified'],
  ['::1', 128, 'loopback'],
  ['100::', 64, 'discard'],
  ['2001::', 32, 'Teredo'],
  ['2001:db8::', 32, 'documentation'],
  ['fc00::', 7, 'private (unique local)'],
  ['fe80::', 10, 'link-local'],
  ['fec0::', 10, 'site-local'],
  ['ff00::', 8, 'multicast'],
]

/** The kind of non-public range `address` is in, or null for a public address. */
export function blockedRange(address: string): string | null {
  const bytes = ipBytes(address)
  if (bytes === null) return 'unparsable'
  if (bytes.length === 16) {
    const embedded = embeddedIPv4(bytes)
    if (embedded !== null) return blockedRange(embedded)
  }
  for (const [base, prefix, word] of BLOCKED) {
    const net = ipBytes(base)!
    if (net.length === bytes.length && matches(bytes, net, prefix)) return word
  }
  return null
}

/** The IPv4 address inside an IPv4-mapped (::ffff:0:0/96), IPv4-compatible, NAT64 (64:ff9b::/96) or 6to4 (2002::/16) address. */
function embeddedIPv4(b: Uint8Array): string | null {
  const zeros = (from: number, to: number): boolean => b.slice(from, to).every((x) => x === 0)
  const v4 = (at: number): string => `${b[at]}.${b[at + 1]}.${b[at + 2]}.${b[at + 3]}`
  if (zeros(0, 10) && b[10] === 0xff && b[11] === 0xff) return v4(12)
  if (zeros(0, 12) && !zeros(12, 16) && !(zeros(12, 15) && b[15] === 1)) return v4(12)
  if (b[0] === 0x00 && b[1] === 0x64 && b[2] === 0xff && b[3] === 0x9b && zeros(4, 12)) return v4(12)
  if (b[0] === 0x20 && b[1] === 0x02) return v4(2)
  return null
}

function matches(address: Uint8Array, net: Uint8Array, prefix: number): boolean {
  for (let bit = 0; bit < prefix; bit += 8) {
    const i = bit / 8
    const mask = prefix - bit >= 8 ? 0xff : (0xff << (8 - (prefix - bit))) & 0xff
    if ((address[i]! & mask) !== (net[i]! & mask)) return false
  }
  return true
}

/** 4 or 16 bytes of an IP address; null when it is not one. */
export function ipBytes(address: string): Uint8Array | null {
  const kind = isIP(address)
  if (kind === 4) return Uint8Array.from(address.split('.').map(Number))
  if (kind !== 6) return null
  let text = address.split('%')[0]!.toLowerCase()
  const out = new Uint8Array(16)
  const dotted = /(\d+\.\d+\.\d+\.\d+)$/.exec(text)
  let tail: number[] = []
  if (dotted !== null) {
    tail = dotted[1]!.split('.').map(Number)
    text = text.slice(0, -dotted[1]!.length) + '0:0'
  }
  const [head, rest] = text.includes('::') ? text.split('::') : [text, undefined]
  const groups = (part: string | undefined): number[] => (part === undefined || part === '' ? [] : part.split(':').map((g) => parseInt(g, 16)))
  const front = groups(head)
  const back = groups(rest)
  const all = rest === undefined ? front : [...front, ...new Array(8 - front.length - back.length).fill(0), ...back]
  all.forEach((g, i) => {
    out[i * 2] = g >> 8
    out[i * 2 + 1] = g & 0xff
  })
  if (tail.length === 4) out.set(tail, 12)
  return out
}

function fetchOnce(url: URL, address: ResolvedAddress, policy: DownloadPolicy, options: DownloadOptions): Promise<IncomingMessage> {
  return new Promise<IncomingMessage>((resolvePromise, reject) => {
    const pinned: LookupFunction = (_host, lookupOptions, callback) => {
      const cb = callback as (err: Error | null, address: string | Array<{ address: string; family: number }>, family?: number) => void
      if ((lookupOptions as { all?: boolean }).all === true) cb(null, [{ address: address.address, family: address.family }])
      else cb(null, address.address, address.family)
    }
    const request = (url.protocol === 'https:' ? httpsRequest : httpRequest)(url, {
      method: 'GET',
      agent: false,
      lookup: pinned,
      headers: { 'user-agent': 'MetaPuppet', accept: '*/*', ...options.headers },
    })
    let done = false
    const fail = (error: DownloadError): void => {
      if (done) return
      done = true
      cleanup()
      request.destroy()
      reject(error)
    }
    const onAbort = (): void => fail(new DownloadError('aborted', `download of ${shown(url)} stopped: the call timed out`))
    const connectTimer = setTimeout(
      () => fail(new DownloadError('connect_timeout', `cannot download ${shown(url)}: no connection within ${policy.connectTimeoutMs} ms`)),
      policy.connectTimeoutMs,
    )
    const cleanup = (): void => {
      clearTimeout(connectTimer)
      options.signal?.removeEventListener('abort', onAbort)
    }
    options.signal?.addEventListener('abort', onAbort, { once: true })
    request.on('socket', (socket) => {
      socket.once(url.protocol === 'https:' ? 'secureConnect' : 'connect', () => clearTimeout(connectTimer))
    })
    request.setTimeout(policy.readTimeoutMs, () =>
      fail(new DownloadError('read_timeout', `cannot download ${shown(url)}: no data for ${policy.readTimeoutMs} ms`)),
    )
    request.on('error', (e) => fail(new DownloadError('network', `cannot download ${shown(url)}: ${e.message}`)))
    request.on('response', (response) => {
      if (done) {
        response.destroy()
        return
      }
      done = true
      clearTimeout(connectTimer)
      options.signal?.removeEventListener('abort', onAbort)
      // The read timeout and the signal keep watching the body (readBody).
      ;(response as IncomingMessage & { metapuppetRequest?: ClientRequest }).metapuppetRequest = request
      resolvePromise(response)
    })
    request.end()
  })
}

function readBody(response: IncomingMessage, url: URL, policy: DownloadPolicy, signal: AbortSignal | undefined): Promise<Buffer> {
  const request = (response as IncomingMessage & { metapuppetRequest?: ClientRequest }).metapuppetRequest
  return new Promise<Buffer>((resolvePromise, reject) => {
    const declared = Number(response.headers['content-length'])
    const tooLarge = (): DownloadError =>
      new DownloadError('too_large', `cannot download ${shown(url)}: larger than the limit of ${policy.maxBytes} bytes (client.file_download.max_bytes)`)
    let done = false
    const chunks: Buffer[] = []
    let total = 0
    const fail = (error: DownloadError): void => {
      if (done) return
      done = true
      signal?.removeEventListener('abort', onAbort)
      response.destroy()
      request?.destroy()
      chunks.length = 0
      reject(error)
    }
    const onAbort = (): void => fail(new DownloadError('aborted', `download of ${shown(url)} stopped after ${total} bytes: the call timed out`))
    if (Number.isFinite(declared) && declared > policy.maxBytes) {
      fail(tooLarge())
      return
    }
    if (signal?.aborted === true) {
      onAbort()
      return
    }
    signal?.addEventListener('abort', onAbort, { once: true })
    request?.setTimeout(policy.readTimeoutMs, () =>
      fail(new DownloadError('read_timeout', `cannot download ${shown(url)}: no data for ${policy.readTimeoutMs} ms after ${total} bytes`)),
    )
    response.on('data', (chunk: Buffer) => {
      total += chunk.length
      if (total > policy.maxBytes) fail(tooLarge())
      else chunks.push(chunk)
    })
    response.on('error', (e) => fail(new DownloadError('network', `cannot download ${shown(url)}: ${e.message}`)))
    response.on('close', () => {
      if (!response.complete) fail(new DownloadError('network', `cannot download ${shown(url)}: the connection was closed after ${total} bytes`))
    })
    response.on('end', () => {
      if (done) return
      done = true
      signal?.removeEventListener('abort', onAbort)
      resolvePromise(Buffer.concat(chunks))
    })
  })
}

function dispositionName(header: string | undefined): string | null {
  if (typeof header !== 'string') return null
  const star = /filename\*\s*=\s*(?:UTF-8|utf-8)''([^;]+)/.exec(header)
  if (star !== null) {
    try {
      return decodeURIComponent(star[1]!.trim())
    } catch {
      // fall through to the plain form
    }
  }
  const plain = /filename\s*=\s*"?([^";]+)"?/.exec(header)
  return plain === null ? null : plain[1]!.trim()
}
