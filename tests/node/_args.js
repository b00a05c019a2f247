'use strict'
// Tiny `--key value` argument parser shared by the helper scripts (no dependencies).
module.exports = function parseArgs (argv) {
  const out = {}
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]
    if (!a.startsWith('--')) throw new Error(`unexpected argument ${a}`)
    out[a.slice(2)] = argv[i + 1]
    i++
  }
  return out
}
