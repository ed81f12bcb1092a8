#!/usr/bin/env node
'use strict';
// A new device's first sync, done by PouchDB: the reference figure beside Outreach's first sync
// (issue 17). A PouchDB HTTP server (express-pouchdb, in a child process of its own, on 127.0.0.1
// and a free port) holds N contact-shaped documents plus the persons they are about; a fresh local
// PouchDB (leveldb on disk in a temp dir, like a device) replicates all of it from the server,
// once per batch size asked for. The clock runs from the first request to the end of replication.
// Prints one JSON object on stdout (figures and settings); progress goes to stderr.
//
//   node replicate.js [--docs 100000] [--persons 1000] [--batch-sizes 1000,100]
//                     [--batches-limit 10] [--server-adapter leveldb|memory] [--no-gzip]
//                     [--seed 17] [--keep]

const childProcess = require('child_process');
const fs = require('fs');
const os = require('os');
const path = require('path');
const { performance } = require('perf_hooks');

const DB_NAME = 'team';

function usage(msg) { const e = new Error(msg); e.usage = true; return e; }

function parseArgs(argv) {
  const o = {
    docs: 100000, persons: 1000, batchSizes: [1000, 100], batchesLimit: 10,
    serverAdapter: 'leveldb', gzip: true, seed: 17, keep: false, serve: false, dir: null,
  };
  const need = (i) => {
    if (i + 1 >= argv.length) throw usage(`${argv[i]} needs a value`);
    return argv[i + 1];
  };
  const posInt = (name, v) => {
    const n = Number(v);
    if (v === '' || !Number.isInteger(n) || n < 0) throw usage(`${name} must be a whole number >= 0, not ${v}`);
    return n;
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    switch (a) {
      case '--docs': o.docs = posInt(a, need(i)); i++; break;
      case '--persons': o.persons = posInt(a, need(i)); i++; break;
      case '--batch-sizes':
        o.batchSizes = need(i).split(',').map((s) => posInt(a, s.trim()));
        if (o.batchSizes.some((b) => b < 1)) throw usage('--batch-sizes must be >= 1');
        i++; break;
      case '--batches-limit': o.batchesLimit = posInt(a, need(i)); i++; break;
      case '--server-adapter':
        o.serverAdapter = need(i); i++;
        if (!['leveldb', 'memory'].includes(o.serverAdapter)) throw usage('--server-adapter: leveldb or memory');
        break;
      case '--no-gzip': o.gzip = false; break;
      case '--seed': o.seed = posInt(a, need(i)); i++; break;
      case '--keep': o.keep = true; break;
      case '--serve': o.serve = true; break; // internal: the child process
      case '--dir': o.dir = need(i); i++; break; // internal
      case '-h': case '--help':
        process.stdout.write(fs.readFileSync(__filename, 'utf8').split('\n').slice(2, 12)
          .map((l) => l.replace(/^\/\/ ?/, '')).join('\n') + '\n');
        process.exit(0);
        break;
      default: throw usage(`unknown argument ${a} (--help lists them)`);
    }
  }
  if (o.persons < 1 && o.docs > 0) throw usage('--persons must be >= 1 when there are contacts');
  return o;
}

function log(...a) { process.stderr.write(`[${new Date().toISOString().slice(11, 19)}] ${a.join(' ')}\n`); }

// ---------------------------------------------------------------------------------------------
// Data: deterministic (seeded), shaped like Outreach's contacts and persons (models/tables.py).

function mulberry32(seed) {
  let a = seed >>> 0;
  return function () {
    a = (a + 0x6D2B79F5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function makeData(opts) {
  // The fields and mix of models/demo.py (DemoGenerator.person and .contact), with Outreach's id
  // form (32 hex digits) as _id and a type field, as a one-database PouchDB app would have.
  const r = mulberry32(opts.seed);
  const pick = (xs) => xs[Math.floor(r() * xs.length)];
  const weighted = (xs, ws) => {
    let x = r() * ws.reduce((s, w) => s + w, 0);
    for (let i = 0; i < xs.length; i++) { x -= ws[i]; if (x < 0) return xs[i]; }
    return xs[xs.length - 1];
  };
  const someSorted = (xs, max) => {
    const n = Math.floor(r() * (max + 1));
    const out = new Set();
    for (let i = 0; i < n; i++) out.add(pick(xs));
    return [...out].sort();
  };
  const hex32 = () => { let s = ''; for (let i = 0; i < 32; i++) s += Math.floor(r() * 16).toString(16); return s; };
  const first = ['Søren', 'Jens', 'Åse', 'Bjørn', 'Mette', 'Lars', 'Pia', 'Kasper', 'Jørgen', 'Hanne', 'Mads',
    'Birgit', 'Ole', 'Tove', 'Niels', 'Ahmed', 'Marek', 'Ion', 'Fatima', 'Agnieszka'];
  const last = ['Hansen', 'Jensen', 'Nielsen', 'Pedersen', 'Andersen', 'Larsen', 'Sørensen', 'Møller'];
  const nick = ['Store', 'Lille', 'Røde', 'Gamle', 'Unge', 'Skæve', 'Glade', 'Stille', 'Lange', 'Bette'];
  const looks = ['grøn jakke', 'rød hue', 'stor rygsæk', 'hund (schæfer)', 'cykel med anhænger', 'briller'];
  const categories = ['rough_sleeping', 'emergency_accommodation', 'hostel', 'sofa_surfing', 'unknown'];
  const needs = ['housing', 'health', 'mental_health', 'addiction', 'income', 'documents'];
  const kinds = ['street', 'drop_in', 'phone', 'home_visit', 'not_found'];
  const living = ['street', 'emergency_bed', 'shelter', 'hotel', 'sofa_surfer', 'move_on', 'home', 'unknown'];
  const services = ['food', 'drink', 'clothing', 'sleeping_bag', 'transport', 'harm_reduction', 'hygiene', 'health', 'referral'];
  const referrals = ['shelter', 'housing', 'health', 'addiction', 'mental_health', 'jobcenter', 'drop_in', 'other'];
  const workers = ['Anna', 'Bo', 'Camilla', 'Dennis', 'Eva', 'Frederik', 'Gitte', 'Hassan'];
  const notes = ['Demo: talte om bolig og næste møde.', 'Demo: virkede træt, fik kaffe og mad.',
    'Demo: vil gerne have hjælp til jobcenter.', 'Demo: sov i opgangen i nat, koldt.',
    'Demo: ny sovepose, aftalte at mødes fredag.', 'Demo: spurgte efter lægen på varmestuen.',
    'Demo: ikke set i en uge, spurgt rundt.', 'Demo: glad for ny hue og handsker.',
    'Demo: snak om kontanthjælp og adresse.', 'Demo: henvist til herberg, plads fra mandag.'];
  const places = [];
  for (let i = 0; i < 18; i++) places.push(hex32());
  const persons = [];
  for (let n = 1; n <= opts.persons; n++) {
    const f = pick(first);
    persons.push({
      _id: hex32(), type: 'person', alias: `Demo ${pick(nick)} ${f} ${n}`,
      full_name: r() < 0.6 ? `${f} ${pick(last)} (demo)` : null,
      birth_year: r() < 0.8 ? 1950 + Math.floor(r() * 55) : null,
      gender: pick(['female', 'male', 'male', 'unknown']), description: `Demo: ${pick(looks)}`,
      category: pick(categories), consent: pick(['none', 'verbal', 'written']),
      status: weighted(['active', 'inactive', 'housed', 'moved', 'deceased'], [80, 10, 4, 2, 4]),
      needs: someSorted(needs, 3), usual_place: r() < 0.7 ? pick(places) : null,
    });
  }
  const start = Date.UTC(2024, 10, 25);
  const contacts = [];
  for (let i = 0; i < opts.docs; i++) {
    const minute = pick([9, 10, 14, 19, 20, 21, 22, 23]) * 60 + Math.floor(r() * 60);
    const at = new Date(start + Math.floor(r() * 731) * 86400000 + minute * 60000);
    const sv = someSorted(services, 3);
    contacts.push({
      _id: hex32(), type: 'contact', at: at.toISOString().slice(0, 16),
      person_id: persons.length && r() < 0.92 ? pick(persons)._id : null, place_id: pick(places),
      kind: weighted(kinds, [70, 15, 5, 5, 5]), living: r() < 0.5 ? pick(living) : null,
      services: sv, referrals: sv.includes('referral') ? [pick(referrals)] : [],
      workers: [pick(workers)], note: r() < 0.7 ? pick(notes) : null,
    });
  }
  return { persons, contacts };
}

function avgBytes(docs) {
  if (!docs.length) return 0;
  let n = 0;
  for (const d of docs) n += Buffer.byteLength(JSON.stringify(d));
  return Math.round(n / docs.length);
}

function dirBytes(p) {
  let n = 0;
  for (const e of fs.readdirSync(p, { withFileTypes: true })) {
    const q = path.join(p, e.name);
    n += e.isDirectory() ? dirBytes(q) : fs.statSync(q).size;
  }
  return n;
}

function cpuSeconds() { const u = process.cpuUsage(); return (u.user + u.system) / 1e6; }

function versionOf(name) {
  try { return require(`${name}/package.json`).version; } catch (e) { return null; }
}

// ---------------------------------------------------------------------------------------------
// The server (child process): fill the source database, then serve it over HTTP.

async function serve(opts) {
  let PouchDB = require('pouchdb');
  let Server;
  if (opts.serverAdapter === 'memory') {
    PouchDB.plugin(require('pouchdb-adapter-memory'));
    Server = PouchDB.defaults({ adapter: 'memory' });
  } else {
    const dir = path.join(opts.dir, 'server') + path.sep;
    fs.mkdirSync(dir, { recursive: true });
    Server = PouchDB.defaults({ prefix: dir });
  }
  const db = new Server(DB_NAME);
  const { persons, contacts } = makeData(opts);
  const t0 = performance.now();
  const all = persons.concat(contacts);
  for (let i = 0; i < all.length; i += 5000) {
    const res = await db.bulkDocs(all.slice(i, i + 5000));
    const bad = res.filter((x) => x.error);
    if (bad.length) throw new Error(`fill: ${bad.length} errors, first ${JSON.stringify(bad[0])}`);
  }
  const fillS = (performance.now() - t0) / 1000;
  const info = await db.info();
  const app = require('express-pouchdb')(Server, {
    mode: 'minimumForPouchDB', inMemoryConfig: true,
    overrideMode: { exclude: opts.gzip ? [] : ['compression'] },
  });
  const server = app.listen(0, '127.0.0.1', () => {
    process.send({
      ready: true, port: server.address().port, fill_s: fillS, doc_count: info.doc_count,
      update_seq: info.update_seq, contact_avg_bytes: avgBytes(contacts), person_avg_bytes: avgBytes(persons),
      example_contact: contacts[0] || null,
    });
  });
  let cpu0 = cpuSeconds();
  process.on('message', (m) => {
    if (m === 'cpu-mark') { cpu0 = cpuSeconds(); process.send({ cpu_mark: true }); }
    if (m === 'cpu-read') process.send({ cpu_s: cpuSeconds() - cpu0 });
    if (m === 'stop') server.close(() => process.exit(0));
  });
  process.on('disconnect', () => process.exit(0));
}

// ---------------------------------------------------------------------------------------------
// The device (parent): start the server, then replicate into a fresh leveldb database per batch size.

function ask(child, msg, key) {
  return new Promise((resolve) => {
    const on = (m) => { if (m && m[key] !== undefined) { child.off('message', on); resolve(m); } };
    child.on('message', on);
    child.send(msg);
  });
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  if (opts.serve) return serve(opts);

  const PouchDB = require('pouchdb');
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'outreach-pouchdb-'));
  const load0 = os.loadavg();
  log(`temp dir ${tmp}; load average ${load0.map((x) => x.toFixed(2)).join(' ')}`);
  log(`server: filling ${opts.docs} contacts + ${opts.persons} persons (${opts.serverAdapter})`);
  const args = ['--serve', '--dir', tmp, '--docs', String(opts.docs), '--persons', String(opts.persons),
    '--server-adapter', opts.serverAdapter, '--seed', String(opts.seed)].concat(opts.gzip ? [] : ['--no-gzip']);
  const child = childProcess.fork(__filename, args, { stdio: ['ignore', 'ignore', 'inherit', 'ipc'] });
  let childExit = null;
  child.on('exit', (code, sig) => { childExit = { code, sig }; });
  const cleanup = () => {
    if (!childExit) child.kill();
    if (!opts.keep) fs.rmSync(tmp, { recursive: true, force: true });
  };
  process.on('SIGINT', () => { cleanup(); process.exit(130); });

  try {
    const ready = await new Promise((resolve, reject) => {
      child.once('message', resolve);
      child.once('exit', (code) => reject(new Error(`server exited (${code}) before it was ready`)));
    });
    const url = `http://127.0.0.1:${ready.port}/${DB_NAME}`;
    log(`server: ${ready.doc_count} docs in ${ready.fill_s.toFixed(1)} s; serving ${url}`);

    const runs = [];
    for (const batchSize of opts.batchSizes) {
      const localPath = path.join(tmp, `device-batch${batchSize}`);
      await ask(child, 'cpu-mark', 'cpu_mark');
      const cpu0 = cpuSeconds();
      const loadBefore = os.loadavg()[0];
      log(`device: replicating, batch_size ${batchSize}, batches_limit ${opts.batchesLimit}`);
      // The clock: from before the first request (the remote handle makes none until used) to the
      // end of replication. Opening the local leveldb database is inside it, as on a device.
      const t0 = performance.now();
      const remote = new PouchDB(url);
      const local = new PouchDB(localPath);
      const res = await PouchDB.replicate(remote, local, { batch_size: batchSize, batches_limit: opts.batchesLimit });
      const seconds = (performance.now() - t0) / 1000;
      const clientCpu = cpuSeconds() - cpu0;
      const serverCpu = (await ask(child, 'cpu-read', 'cpu_s')).cpu_s;
      const info = await local.info();
      if (res.status !== 'complete' || !res.ok || info.doc_count !== ready.doc_count) {
        throw new Error(`replication incomplete: status ${res.status}, ok ${res.ok}, local ${info.doc_count} of ${ready.doc_count}, errors ${JSON.stringify(res.errors).slice(0, 300)}`);
      }
      await local.close();
      await remote.close();
      const run = {
        batch_size: batchSize, batches_limit: opts.batchesLimit, docs_written: res.docs_written,
        docs_read: res.docs_read, seconds: +seconds.toFixed(3), docs_per_s: Math.round(res.docs_written / seconds),
        client_cpu_s: +clientCpu.toFixed(2), server_cpu_s: +serverCpu.toFixed(2),
        local_disk_bytes: dirBytes(localPath), load1_before: +loadBefore.toFixed(2), load1_after: +os.loadavg()[0].toFixed(2),
      };
      log(`device: ${run.docs_written} docs in ${run.seconds} s = ${run.docs_per_s} docs/s (client CPU ${run.client_cpu_s} s, server CPU ${run.server_cpu_s} s)`);
      runs.push(run);
      if (!opts.keep) fs.rmSync(localPath, { recursive: true, force: true });
    }

    const out = {
      what: 'PouchDB first sync: fresh leveldb PouchDB replicating everything from a local express-pouchdb server',
      when: new Date().toISOString(),
      versions: {
        node: process.versions.node, pouchdb: versionOf('pouchdb'), 'express-pouchdb': versionOf('express-pouchdb'),
        leveldown: versionOf('leveldown'), express: versionOf('express'),
      },
      machine: { cpus: os.cpus().length, cpu_model: (os.cpus()[0] || {}).model, load_avg_start: load0.map((x) => +x.toFixed(2)), load_avg_end: os.loadavg().map((x) => +x.toFixed(2)) },
      settings: {
        contacts: opts.docs, persons: opts.persons, total_docs: ready.doc_count, seed: opts.seed,
        contact_avg_json_bytes: ready.contact_avg_bytes, person_avg_json_bytes: ready.person_avg_bytes,
        server: `express-pouchdb minimumForPouchDB mode, ${opts.serverAdapter} adapter, gzip ${opts.gzip ? 'on' : 'off'}, separate process, 127.0.0.1`,
        device: 'pouchdb leveldb adapter (leveldown) in a temp dir, opened inside the timed region',
        replicate: 'PouchDB.replicate(remote, local, {batch_size, batches_limit}), one-shot',
        clock: 'from before the first request to the replication promise resolving',
      },
      fill: { seconds: +ready.fill_s.toFixed(2), server_update_seq: ready.update_seq },
      example_contact: ready.example_contact,
      runs,
    };
    process.stdout.write(JSON.stringify(out, null, 2) + '\n');
  } finally {
    if (!childExit) {
      const exited = new Promise((resolve) => { child.once('exit', resolve); setTimeout(resolve, 3000).unref(); });
      child.send('stop');
      await exited;
    }
    cleanup();
  }
}

main().catch((e) => { log(`error: ${e && e.usage ? e.message : (e && e.stack) || e}`); process.exitCode = 1; if (!process.send) setTimeout(() => process.exit(1), 100).unref(); });
