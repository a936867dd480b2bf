// Acceptance test of issue 5: the unmodified npm eventhub-jsclient 2.4.2
// (with ws) against a real pubsub node. cmd/pubsub/eventhub_js_e2e_test.go
// builds the binary, starts the node with the disk store and auth on, mints
// the keys and runs this file with `node --test`; it also serves a small
// control endpoint through which the last test moves the node off its
// address and back (protocols/eventhub.md, compatibility checklist 1–16).
//
// Environment (all set by the Go wrapper):
//   PUBSUB_URL             ws://HOST:PORT of the node
//   PUBSUB_TOKEN           key with read and write on eh/# (subject "alice")
//   PUBSUB_READONLY_TOKEN  key with read on eh/# only
//   PUBSUB_CONTROL         http://HOST:PORT of the wrapper's control endpoint
//
// The client is used as published. Where a test has to see what the node
// sent rather than what the client chose to pass on (unsubscribe, ping,
// close codes), it listens on the client's WebSocket alongside it, without
// replacing any of the client's handlers.

import { test } from 'node:test';
import assert from 'node:assert/strict';

import { Eventhub } from 'eventhub-jsclient';

function requiredEnv(name) {
  const value = process.env[name];
  if (!value) {
    throw new Error(`${name} is not set: run this file through cmd/pubsub/eventhub_js_e2e_test.go`);
  }
  return value;
}

const nodeURL = requiredEnv('PUBSUB_URL');
const token = requiredEnv('PUBSUB_TOKEN');
const readOnlyToken = requiredEnv('PUBSUB_READONLY_TOKEN');
const controlURL = requiredEnv('PUBSUB_CONTROL');

// subjectOf reads the sub claim of a JWT, which the node must report as
// the origin of that key's messages (eventhub.md §2.3).
function subjectOf(jwt) {
  const payload = JSON.parse(Buffer.from(jwt.split('.')[1], 'base64url').toString('utf8'));
  return payload.sub;
}

const alice = subjectOf(token);

// Eventhub ids are "<epoch-ms>-<seq>" (checklist 9).
const eventIdPattern = /^\d+-\d+$/;

// compareIds orders two event ids by time, then sequence.
function compareIds(a, b) {
  const [am, as] = a.split('-').map(BigInt);
  const [bm, bs] = b.split('-').map(BigInt);
  if (am !== bm) return am < bm ? -1 : 1;
  if (as !== bs) return as < bs ? -1 : 1;
  return 0;
}

// waitFor polls cond until it holds; a deadline, never a fixed sleep.
async function waitFor(cond, what, timeoutMs = 10000) {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) {
      throw new Error(`timed out waiting for ${what}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

// connected returns a connected client that the test disconnects when it
// ends, so no ping timer keeps the process alive.
async function connected(t, jwt = token, opts = {}) {
  const client = new Eventhub(nodeURL, jwt, opts);
  t.after(() => client.disconnect());
  assert.equal(await client.connect(), true);
  return client;
}

// frames records every JSON document the node sends on the client's
// current socket.
function frames(client) {
  const seen = [];
  // eslint-disable-next-line no-underscore-dangle -- observe, not modify
  client._socket.addEventListener('message', (ev) => seen.push(JSON.parse(ev.data.toString())));
  return seen;
}

// subscribeAckId finds the request id the node acknowledged a subscribe
// with: pushes for that subscription reuse it (eventhub.md §2.3).
function subscribeAckId(seen, topic) {
  const ack = seen.find((f) => f.result?.action === 'subscribe' && f.result.topic === topic);
  assert.ok(ack, `no subscribe ack for ${topic}`);
  return ack.id;
}

// publishAll publishes [topic, message] pairs in order and returns the
// pushes subscribers should see, built from the node's publish results.
async function publishAll(client, pairs, origin = alice) {
  const expected = [];
  for (const [topic, message] of pairs) {
    const res = await client.publish(topic, message);
    assert.equal(res.action, 'publish');
    assert.equal(res.status, 'ok');
    assert.equal(res.topic, topic);
    assert.match(res.id, eventIdPattern);
    expected.push({ id: res.id, message, origin, topic });
  }
  return expected;
}

// control asks the Go wrapper to move the node (see the wrapper).
async function control(action) {
  const res = await fetch(`${controlURL}/${action}`, { method: 'POST', signal: AbortSignal.timeout(30000) });
  const body = await res.json();
  assert.equal(res.status, 200, `control ${action}: ${JSON.stringify(body)}`);
  return body;
}

test('connect: a valid key connects, a bad key is refused before the upgrade', async (t) => {
  await connected(t);

  // Checklist 3: HTTP 401 before the upgrade, so connect() rejects.
  const forged = new Eventhub(nodeURL, `${token.slice(0, -4)}AAAA`);
  t.after(() => forged.disconnect());
  await assert.rejects(forged.connect(), (err) => /401/.test(err.message));
});

test('+ and # pattern subscriptions each get their matches, with origin and ids', async (t) => {
  const client = await connected(t);
  const plus = [];
  const hash = [];
  assert.deepEqual(await client.subscribe('eh/+/temp', (m) => plus.push(m)), {
    action: 'subscribe',
    status: 'ok',
    topic: 'eh/+/temp',
  });
  assert.deepEqual(await client.subscribe('eh/#', (m) => hash.push(m)), {
    action: 'subscribe',
    status: 'ok',
    topic: 'eh/#',
  });

  const [kitchenTemp, kitchenHum, hallTemp, root, end] = await publishAll(client, [
    ['eh/kitchen/temp', '21.5'],
    ['eh/kitchen/hum', '40'],
    ['eh/hall/temp', '19'],
    ['eh', 'root'], // # matches its parent level (eventhub.md §3)
    ['eh/end/temp', 'end'], // both match: once it is in, nothing else is due
  ]);
  await waitFor(() => plus.length >= 3 && hash.length >= 5, 'both subscriptions to get their messages');
  assert.deepEqual(plus, [kitchenTemp, hallTemp, end]);
  assert.deepEqual(hash, [kitchenTemp, kitchenHum, hallTemp, root, end]);
  for (let i = 1; i < hash.length; i++) {
    assert.equal(compareIds(hash[i - 1].id, hash[i].id), -1, 'ids increase with publish order');
  }
});

test('list shows the subscriptions; unsubscribe and unsubscribeAll stop delivery at the node', async (t) => {
  const client = await connected(t);
  const seen = frames(client);
  const plus = [];
  const hash = [];
  await client.subscribe('eh/+/unsub', (m) => plus.push(m));
  await client.subscribe('eh/u/#', (m) => hash.push(m));
  assert.deepEqual((await client.listSubscriptions()).sort(), ['eh/+/unsub', 'eh/u/#']);

  const plusId = subscribeAckId(seen, 'eh/+/unsub');
  client.unsubscribe('eh/+/unsub');
  // Requests are answered in order, so list reflects the unsubscribe.
  assert.deepEqual(await client.listSubscriptions(), ['eh/u/#']);

  const published = await publishAll(client, [['eh/u/unsub', 'after unsubscribe']]);
  await waitFor(() => hash.length >= 1, 'the # subscription to get the message');
  assert.deepEqual(hash, published);
  assert.deepEqual(plus, []);
  // The client drops pushes for topics it unsubscribed; the node must not
  // send them at all.
  const stray = seen.filter((f) => f.id === plusId && f.result?.message !== undefined);
  assert.deepEqual(stray, []);

  const hashId = subscribeAckId(seen, 'eh/u/#');
  client.unsubscribeAll();
  assert.deepEqual(await client.listSubscriptions(), []);
  // A subscription made afterwards is the sentinel: once its message is
  // in, a push for the removed one would have arrived before it.
  const sentinel = [];
  await client.subscribe('eh/+/sentinel', (m) => sentinel.push(m));
  const [late] = await publishAll(client, [['eh/u/sentinel', 'after unsubscribeAll']]);
  await waitFor(() => sentinel.length >= 1, 'the sentinel subscription to get its message');
  assert.deepEqual(sentinel, [late]);
  assert.equal(hash.length, 1);
  const hashPushes = seen.filter((f) => f.id === hashId && f.result?.message !== undefined);
  assert.deepEqual(hashPushes.map((f) => f.result.message), ['after unsubscribe']);
});

test('ping: the client monitor gets pongs and never reconnects', async (t) => {
  const events = [];
  const client = await connected(t, token, { pingInterval: 100, pingTimeout: 3000, maxFailedPings: 1 });
  for (const name of ['offline', 'reconnect']) client.on(name, () => events.push(name));
  const seen = frames(client);
  await waitFor(() => seen.filter((f) => typeof f.result?.pong === 'number').length >= 3, 'three pongs');
  for (const pong of seen.filter((f) => f.result?.pong !== undefined)) {
    assert.ok(Number.isInteger(pong.id), 'a pong answers the ping request id');
    assert.ok(Math.abs(pong.result.pong - Date.now()) < 60000, `pong ${pong.result.pong} is the node's epoch ms`);
  }
  assert.deepEqual(events, []);
});

test('eventlog and subscribe history: oldest first, since, sinceEventId and limit', async (t) => {
  const client = await connected(t);
  const logged = await publishAll(client, [
    ['eh/log/a', 'first'],
    ['eh/log/b', 'second'],
    ['eh/log/a', 'third'],
  ]);

  const all = await client.getEventlog('eh/log/#', { since: -60000 });
  assert.equal(all.action, 'eventlog');
  assert.equal(all.status, 'ok');
  assert.equal(all.topic, 'eh/log/#');
  assert.deepEqual(all.items, logged);

  const after = await client.getEventlog('eh/log/#', { sinceEventId: logged[0].id });
  assert.deepEqual(after.items, logged.slice(1));

  const newest = await client.getEventlog('eh/log/#', { since: -60000, limit: 2 });
  assert.deepEqual(newest.items, logged.slice(1));

  const single = await client.getEventlog('eh/log/a', { since: -60000 });
  assert.deepEqual(single.items, [logged[0], logged[2]]);

  // Subscribe replays history after its ack, then goes live.
  const bySince = [];
  await client.subscribe('eh/log/+', (m) => bySince.push(m), { since: -60000, limit: 2 });
  const byId = [];
  await client.subscribe('eh/log/#', (m) => byId.push(m), { sinceEventId: logged[1].id });
  const [live] = await publishAll(client, [['eh/log/b', 'live']]);
  await waitFor(() => bySince.length >= 3 && byId.length >= 2, 'history and the live message');
  assert.deepEqual(bySince, [logged[1], logged[2], live]);
  assert.deepEqual(byId, [logged[2], live]);
});

test('KV: set, get and del round-trip', async (t) => {
  const client = await connected(t);
  assert.deepEqual(await client.set('eh/kv/color', 'blue'), { action: 'set', key: 'eh/kv/color', success: true });
  assert.deepEqual(await client.get('eh/kv/color'), { action: 'get', key: 'eh/kv/color', value: 'blue' });
  assert.deepEqual(await client.set('eh/kv/color', 'green', 60), { action: 'set', key: 'eh/kv/color', success: true });
  assert.deepEqual(await client.get('eh/kv/color'), { action: 'get', key: 'eh/kv/color', value: 'green' });
  assert.deepEqual(await client.del('eh/kv/color'), { action: 'del', key: 'eh/kv/color', success: true });
  await assert.rejects(client.get('eh/kv/color'), {
    code: -32602,
    message: 'Invalid params',
    data: 'KVStore: key not found',
  });
  assert.deepEqual(await client.del('eh/kv/color'), { action: 'del', key: 'eh/kv/color', success: false });
});

test('a key without write access: publish and set are rejected, reading works', async (t) => {
  const reader = await connected(t, readOnlyToken);
  await assert.rejects(reader.publish('eh/ro/x', 'nope'), {
    code: -32602,
    message: 'Invalid params',
    data: 'Insufficient access to topic: eh/ro/x',
  });
  await assert.rejects(reader.set('eh/ro/key', 'nope'), {
    code: -32602,
    message: 'Invalid params',
    data: 'You are not allowed to write key eh/ro/key',
  });
  // The connection stays usable after RPC errors (checklist 16), and the
  // origin of another key's message is that key's subject.
  const got = [];
  await reader.subscribe('eh/ro/#', (m) => got.push(m));
  const writer = await connected(t);
  const published = await publishAll(writer, [['eh/ro/x', 'from alice']]);
  await waitFor(() => got.length >= 1, 'the read-only key to receive');
  assert.deepEqual(got, published);
  assert.equal(got[0].origin, alice);
});

test('disconnect: the node closes the connection with a normal closure', async (t) => {
  const client = await connected(t);
  const events = [];
  client.on('disconnect', () => events.push('disconnect'));
  client.on('reconnect', () => events.push('reconnect'));
  // eslint-disable-next-line no-underscore-dangle -- observe, not modify
  const socket = client._socket;
  const closed = new Promise((resolve) => socket.addEventListener('close', (ev) => resolve(ev)));
  await client.disconnect();
  const ev = await closed;
  // 1000 comes from the node's close frame; had the client given up
  // waiting and closed the socket itself, the code would be 1005 or 1006.
  assert.equal(ev.code, 1000);
  assert.equal(socket.readyState, socket.CLOSED);
  assert.deepEqual(events, ['disconnect']);
});

test('reconnect after a node restart replays what was missed by sinceEventId', async (t) => {
  const events = [];
  const client = await connected(t, token, { reconnectInterval: 100 });
  for (const name of ['connect', 'offline', 'reconnect']) client.on(name, () => events.push(name));
  const got = [];
  await client.subscribe('eh/replay/#', (m) => got.push(m));
  const before = await publishAll(client, [
    ['eh/replay/a', 'before 1'],
    ['eh/replay/b', 'before 2'],
  ]);
  await waitFor(() => got.length >= 2, 'the live messages before the restart');
  assert.deepEqual(got, before);

  // The node stops; while the client retries its address in vain, the
  // node runs on the same data dir at another address, where a second
  // client publishes what the first one misses.
  const { url: asideURL } = await control('aside');
  assert.notEqual(asideURL, nodeURL);
  await waitFor(() => events.includes('offline'), 'the client to notice the node is gone');
  const publisher = new Eventhub(asideURL, token);
  assert.equal(await publisher.connect(), true);
  const missed = await publishAll(publisher, [
    ['eh/replay/a', 'missed 1'],
    ['eh/other', 'not subscribed'],
    ['eh/replay/c', 'missed 2'],
  ]);
  await publisher.disconnect();

  // Back on its address, the node has the missed messages on disk; the
  // client reconnects on its own and resubscribes with sinceEventId.
  const { url: homeURL } = await control('home');
  assert.equal(homeURL, nodeURL);
  await waitFor(() => got.length >= 4, 'the replay after the reconnect', 20000);
  assert.deepEqual(got, [...before, missed[0], missed[2]]);

  const [live] = await publishAll(client, [['eh/replay/d', 'live after restart']]);
  await waitFor(() => got.length >= 5, 'a live message after the reconnect');
  assert.deepEqual(got, [...before, missed[0], missed[2], live]);
  for (let i = 1; i < got.length; i++) {
    assert.equal(compareIds(got[i - 1].id, got[i].id), -1, 'ids keep increasing across restarts');
  }
  // Listeners were added after the first connect: one successful retry.
  assert.equal(events.filter((e) => e === 'connect').length, 1);
  assert.ok(events.includes('reconnect'));
});
