/**
 * Wechaty's memory card on disk: where a puppet that can save its login (wechat4u) keeps it,
 * so a restart needs no new QR scan.
 *
 * Wechaty names the card after its `name` option (`<name>.memory-card.json`, relative to the
 * working directory) and writes it with the default file mode. The card holds login cookies,
 * so it lives in a 0700 folder under the data directory and is created 0600 before Wechaty
 * first writes it.
 */
import { closeSync, existsSync, mkdirSync, openSync, writeSync } from 'node:fs'
import { dirname } from 'node:path'
import { ConfigError } from './config.js'

/** `{name}` for WechatyBuilder.build, or `{}` (keep the card in memory) when `path` is null. */
export function prepareMemoryCard(path: string | null): { name?: string } {
  if (path === null) return {}
  if (!path.endsWith('.memory-card.json')) {
    throw new ConfigError(`client.memory_card must end in .memory-card.json (Wechaty adds it otherwise): ${path}`)
  }
  try {
    mkdirSync(dirname(path), { recursive: true, mode: 0o700 })
    if (!existsSync(path)) {
      const fd = openSync(path, 'wx', 0o600)
      writeSync(fd, '{}')
      closeSync(fd)
    }
  } catch (e) {
    throw new ConfigError(`cannot prepare the memory card ${path} (client.memory_card): ${e instanceof Error ? e.message : String(e)}`)
  }
  return { name: path }
}
