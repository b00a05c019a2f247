'use strict'
// Round-trip benchmark with a grenache-nodejs-http PeerRPCClient.
// Usage: node bench_client.js --grape URL --name svc [--concurrency 16] [--duration 5]
//          [--warmup 1]
// Keeps `concurrency` requests in flight (keep-alive HTTP agent) for `duration` seconds
// after `warmup` seconds, then prints {"requests", "seconds", "rps", "p50_ms", "p99_ms",
// "errors", "total" (requests including the warm-up), "cpu_s" (this process's CPU time)}.
const { PeerRPCClient } = require('grenache-nodejs-http')
const Link = require('grenache-nodejs-link')
const args = require('./_args')(process.argv.slice(2))

const link = new Link({ grape: args.grape, requestTimeout: 10000 })
link.start()
const peer = new PeerRPCClient(link, {})
peer.init()

const concurrency = Number(args.concurrency || 16)
const duration = Number(args.duration || 5) * 1000
const warmup = Number(args.warmup || 1) * 1000
const payload = { bench: true, n: 1 }

const cpu0 = process.cpuUsage()
let total = 0
const t0 = Date.now()
const measureFrom = t0 + warmup
const end = measureFrom + duration
const latencies = []
let errors = 0
let running = concurrency

function worker () {
  const start = process.hrtime.bigint()
  peer.request(args.name, payload, { timeout: 10000 }, (err) => {
    const now = Date.now()
    if (err) {
      errors++
    } else {
      total++
      if (now >= measureFrom) latencies.push(Number(process.hrtime.bigint() - start) / 1e6)
    }
    if (now < end) return worker()
    if (--running === 0) finish()
  })
}

function finish () {
  latencies.sort((a, b) => a - b)
  const q = (p) => latencies.length ? latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))] : null
  const seconds = duration / 1000
  process.stdout.write(JSON.stringify({
    requests: latencies.length,
    seconds,
    rps: latencies.length / seconds,
    p50_ms: q(0.5),
    p99_ms: q(0.99),
    errors,
    total,
    cpu_s: (() => { const c = process.cpuUsage(cpu0); return (c.user + c.system) / 1e6 })()
  }) + '\n')
  peer.stop()
  link.stop()
  process.exit(0)
}

for (let i = 0; i < concurrency; i++) worker()
