'use strict'
// grenache-nodejs-link against a grape: put, get or lookup, result as JSON.
// Usage: node link.js --grape URL --op put --value STR | --op get --key HEX
//          | --op lookup --name NAME
// Prints {"ok": true, "result": ...} or {"ok": false, "error": "..."}.
const Link = require('grenache-nodejs-link')
const args = require('./_args')(process.argv.slice(2))

const link = new Link({ grape: args.grape, requestTimeout: 5000 })
link.start()

function done (err, result) {
  const out = err ? { ok: false, error: err.message } : { ok: true, result: result === undefined ? null : result }
  process.stdout.write(JSON.stringify(out) + '\n')
  link.stop()
  process.exit(0)
}

if (args.op === 'put') link.put({ v: args.value }, done)
else if (args.op === 'get') link.get(args.key, done)
else if (args.op === 'lookup') link.lookup(args.name, {}, done)
else done(new Error(`unknown op ${args.op}`))
