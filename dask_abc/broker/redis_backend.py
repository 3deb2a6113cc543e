"""The coordinator on a Redis server, for sites that already run one.

The protocol's state (see :class:`~dask_abc.broker.state.BrokerState`) lives
in Redis keys under one prefix; every operation that reads and writes is a
Lua script, so it is atomic, and times come from the server's clock, so
hosts with unsynchronised clocks agree on leases.

Waiting calls block in Redis, not in a polling loop: the scripts that change
the generation or the stop flag append to the stream ``P:gen-events``, those
that queue ranges to ``P:queue-events``; a worker process's ``watch`` and
``claim_many`` get the stream's last id atomically with their reply and then
``XREAD BLOCK`` from it, so no change between the two is missed. The master's
``take_results`` is a ``BLPOP`` on the results list.

The server may be restarted, even empty (no persistence, a ``FLUSHALL``): a
call while it is down raises :class:`BrokerUnreachable` after a few quick
retries, the connection heals by itself when it is back, and the master
plants its generation again on an empty server
(:class:`~dask_abc.sampler.BrokerSampler`).
"""

from __future__ import annotations

import contextlib
import json

from .. import config
from .base import Broker
from .errors import BrokerAuthError, BrokerBusy, BrokerUnreachable

# KEYS and ARGV are documented per script; P is the key prefix (ARGV[1]).
_PRELUDE = """
local P = ARGV[1]
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local function current() return redis.call('HGET', P .. ':gen', 'token') end
local function lease_key(w) return P .. ':lease:' .. w end
local function notify(kind)  -- kind: 'gen' or 'queue'; wakes XREAD BLOCK on the stream
  redis.call('XADD', P .. ':' .. kind .. '-events', 'MAXLEN', '~', '64', '*', 'e', '1')
end
local function generation_changed() notify('gen'); notify('queue') end
local function last_event(kind)
  local last = redis.call('XREVRANGE', P .. ':' .. kind .. '-events', '+', '-', 'COUNT', 1)
  if #last == 0 then return '0-0' end
  return last[1][1]
end
local function forget(w)  -- drop a worker process's registration (its slots)
  local k = redis.call('HGET', P .. ':worker-slots', w)
  if k then
    redis.call('HDEL', P .. ':worker-slots', w)
    if redis.call('HINCRBY', P .. ':threads', k, -1) <= 0 then
      redis.call('HDEL', P .. ':threads', k)
    end
  end
  redis.call('HDEL', P .. ':worker-info', w)
  redis.call('HDEL', P .. ':worker-since', w)
end
local function requeue(w)
  local leases = redis.call('HGETALL', lease_key(w))
  local lost = {}
  for i = 1, #leases, 2 do lost[#lost + 1] = leases[i] .. ':' .. leases[i + 1] end
  table.sort(lost, function(a, b)
    return tonumber(string.match(a, '^%d+')) < tonumber(string.match(b, '^%d+')) end)
  for i = #lost, 1, -1 do
    redis.call('LPUSH', P .. ':queue', lost[i])
    redis.call('SADD', P .. ':requeued', string.match(lost[i], '^%d+'))
  end
  redis.call('DEL', lease_key(w))
  if #lost > 0 then notify('queue') end
  return lost
end
local function claim_many(worker, token, n)
  local claimed = {}
  if current() ~= token then return claimed end
  for i = 1, n do
    local r = redis.call('LPOP', P .. ':queue')
    if not r then break end
    local start, count = string.match(r, '^(%d+):(%d+)$')
    redis.call('HSET', lease_key(worker), start, count)
    claimed[#claimed + 1] = r
  end
  if #claimed > 0 then redis.call('HSET', P .. ':workers', worker, now) end
  return claimed
end
local function claim(worker, token)
  return claim_many(worker, token, 1)[1] or false
end
local function push(worker, token, start, count, accepted, result, failed)
  redis.call('HDEL', lease_key(worker), start)
  redis.call('HINCRBY', P .. ':worker-evaluations', worker, count)
  if current() ~= token then return 0 end
  if redis.call('SADD', P .. ':returned', start) == 0 then return 0 end
  if redis.call('SREM', P .. ':requeued', start) == 1 then
    redis.call('LREM', P .. ':queue', 0, start .. ':' .. count)
  end
  redis.call('RPUSH', P .. ':results', result)
  redis.call('HINCRBY', P .. ':counters', 'evaluations', count)
  redis.call('HINCRBY', P .. ':counters', 'acceptances', accepted)
  redis.call('HINCRBY', P .. ':counters', 'failures', failed or 0)
  return 1
end
"""

_SCRIPTS = {
    # ARGV: P, owner, ttl
    "acquire": """
local holder = redis.call('GET', P .. ':owner')
if holder and holder ~= ARGV[2] then return holder end
if holder ~= ARGV[2] and redis.call('DEL', P .. ':stop') == 1 then generation_changed() end
redis.call('SET', P .. ':owner', ARGV[2], 'PX', math.floor(tonumber(ARGV[3]) * 1000))
return false
""",
    # ARGV: P, owner
    "release": """
if redis.call('GET', P .. ':owner') == ARGV[2] then
  redis.call('DEL', P .. ':owner')
  redis.call('DEL', P .. ':gen', P .. ':spec', P .. ':queue', P .. ':results')
  generation_changed()
end
""",
    # ARGV: P
    "request_stop": """
if redis.call('SET', P .. ':stop', 1, 'NX') then generation_changed() end
""",
    # ARGV: P, token, t, n, spec
    "start_generation": """
for _, w in ipairs(redis.call('HKEYS', P .. ':workers')) do redis.call('DEL', lease_key(w)) end
redis.call('DEL', P .. ':queue', P .. ':results', P .. ':returned', P .. ':requeued',
           P .. ':counters')
redis.call('HSET', P .. ':gen', 'token', ARGV[2], 't', ARGV[3], 'n', ARGV[4], 'epsilon', ARGV[6])
redis.call('SET', P .. ':spec', ARGV[5])
generation_changed()
""",
    # ARGV: P, token, range...
    "add_ranges": """
if current() ~= ARGV[2] or #ARGV < 3 then return end
for i = 3, #ARGV, 1000 do  -- unpack has a stack limit
  redis.call('RPUSH', P .. ':queue', unpack(ARGV, i, math.min(i + 999, #ARGV)))
end
notify('queue')
""",
    # ARGV: P, token, lease seconds
    "requeue_lost": """
if current() ~= ARGV[2] then return {} end
local lost = {}
local seen = redis.call('HGETALL', P .. ':workers')
for i = 1, #seen, 2 do
  if now - tonumber(seen[i + 1]) > tonumber(ARGV[3]) then
    for _, r in ipairs(requeue(seen[i])) do lost[#lost + 1] = r end
    redis.call('HDEL', P .. ':workers', seen[i])
    redis.call('HDEL', P .. ':worker-evaluations', seen[i])
    forget(seen[i])
  end
end
return lost
""",
    # ARGV: P, token
    "finish_generation": """
if current() ~= ARGV[2] then return end
for _, w in ipairs(redis.call('HKEYS', P .. ':workers')) do redis.call('DEL', lease_key(w)) end
redis.call('HDEL', P .. ':gen', 'token')
redis.call('DEL', P .. ':spec', P .. ':queue', P .. ':results')
generation_changed()
""",
    # ARGV: P
    "reset_workers": """
local workers = redis.call('HKEYS', P .. ':workers')
for _, w in ipairs(workers) do requeue(w) end
redis.call('DEL', P .. ':workers', P .. ':worker-evaluations', P .. ':worker-info',
           P .. ':worker-slots', P .. ':worker-since', P .. ':threads')
return #workers
""",
    # ARGV: P, worker, threads, info (JSON)
    "register": """
local since = redis.call('HGET', P .. ':worker-since', ARGV[2]) or now
forget(ARGV[2])
redis.call('HSET', P .. ':worker-since', ARGV[2], since)
redis.call('HSET', P .. ':worker-slots', ARGV[2], ARGV[3])
redis.call('HINCRBY', P .. ':threads', ARGV[3], 1)
redis.call('HSET', P .. ':worker-info', ARGV[2], ARGV[4])
redis.call('HSET', P .. ':workers', ARGV[2], now)
""",
    # ARGV: P, worker; the last id of the generation events (for XREAD BLOCK)
    "heartbeat": """
redis.call('HSET', P .. ':workers', ARGV[2], now)
local gen = redis.call('HMGET', P .. ':gen', 'token', 't')
return {gen[1] or false, gen[2] or false, redis.call('EXISTS', P .. ':stop'),
        redis.call('HEXISTS', P .. ':worker-slots', ARGV[2]), last_event('gen')}
""",
    # ARGV: P, worker
    "unregister": """
requeue(ARGV[2])
redis.call('HDEL', P .. ':workers', ARGV[2])
redis.call('HDEL', P .. ':worker-evaluations', ARGV[2])
forget(ARGV[2])
""",
    # ARGV: P, worker, token
    "claim": """
return claim(ARGV[2], ARGV[3])
""",
    # ARGV: P, worker, token, count; {running (0/1), last queue event id, range...}
    "claim_many": """
local running = current() == ARGV[3] and 1 or 0
local claimed = claim_many(ARGV[2], ARGV[3], tonumber(ARGV[4]))
return {running, last_event('queue'), unpack(claimed)}
""",
    # ARGV: P, worker, token, start, count, accepted, result, failed
    "push": """
return push(ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8])
""",
    # ARGV: P, worker, token, start, count, accepted, result, failed
    "push_and_claim": """
push(ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8])
return claim(ARGV[2], ARGV[3])
""",
    # ARGV: P, worker, token, claim, then start, count, accepted, failed, result per range
    # {running (0/1), range...}
    "push_many": """
for i = 5, #ARGV, 5 do
  push(ARGV[2], ARGV[3], ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 4], ARGV[i + 3])
end
local running = current() == ARGV[3] and 1 or 0
return {running, unpack(claim_many(ARGV[2], ARGV[3], tonumber(ARGV[4])))}
""",
    # ARGV: P, worker, token, failure
    "report_failure": """
if current() == ARGV[3] then redis.call('RPUSH', P .. ':results', ARGV[4]) end
""",
    # ARGV: P, worker, token, start, count
    "give_back": """
redis.call('HDEL', lease_key(ARGV[2]), ARGV[4])
if current() == ARGV[3] and redis.call('SISMEMBER', P .. ':returned', ARGV[4]) == 0 then
  redis.call('LPUSH', P .. ':queue', ARGV[4] .. ':' .. ARGV[5])
  redis.call('SADD', P .. ':requeued', ARGV[4])
  notify('queue')
end
""",
    # ARGV: P, worker, token, range... (in index order)
    "give_back_many": """
local running = current() == ARGV[3]
local queued = 0
for i = #ARGV, 4, -1 do
  local start = string.match(ARGV[i], '^%d+')
  redis.call('HDEL', lease_key(ARGV[2]), start)
  if running and redis.call('SISMEMBER', P .. ':returned', start) == 0 then
    redis.call('LPUSH', P .. ':queue', ARGV[i])
    redis.call('SADD', P .. ':requeued', start)
    queued = queued + 1
  end
end
if queued > 0 then notify('queue') end
""",
}


def _range(text: bytes | str) -> tuple[int, int]:
    start, count = (text.decode() if isinstance(text, bytes) else text).split(":")
    return int(start), int(count)


class RedisBroker(Broker):
    """The broker protocol on a Redis server (redis-py).

    Parameters
    ----------
    host, port : str, int
        The server.
    password : str, optional
        As set by the server's ``requirepass``.
    prefix : str, optional
        Key prefix; default ``abc.broker.name`` (one per concurrent analysis).

    Examples
    --------
    With a Redis server running (not run as a doctest)::

        broker = RedisBroker("127.0.0.1", 6379, password="...")
        broker.status()["workers"]
    """

    def __init__(self, host: str = "localhost", port: int = 6379, password: str | None = None,
                 prefix: str | None = None):
        import redis
        from redis.backoff import ExponentialBackoff
        from redis.retry import Retry

        self.prefix = prefix or config.get("broker.name")
        self.address = f"redis://{host}:{port}"
        self.password = password
        # a restarted server is reached again on the next call; while it is down, a
        # call fails within a second (callers decide how long to keep trying)
        self.redis = redis.Redis(host=host, port=int(port), password=password,
                                 retry=Retry(ExponentialBackoff(cap=0.25, base=0.02), 3))
        self._scripts = {name: self.redis.register_script(_PRELUDE + body)
                         for name, body in _SCRIPTS.items()}
        self.reconnect()  # fail now, clearly, if unreachable or refused

    def reconnect(self, wait: float = 0.0) -> None:
        """One call that the server must answer; the connection itself heals."""
        self._call("heartbeat", "__probe__")
        with self._errors():
            self.redis.hdel(f"{self.prefix}:workers", "__probe__")

    @contextlib.contextmanager
    def _errors(self):
        """redis-py's errors as :class:`BrokerAuthError` and :class:`BrokerUnreachable`."""
        import redis

        try:
            yield
        # redis-py maps every refusal of AUTH (NOAUTH, WRONGPASS, no password set) to
        # these two; AuthenticationError is a ConnectionError, so it comes first
        except (redis.AuthenticationError, redis.AuthenticationWrongNumberOfArgsError) as error:
            if self.password is None:
                raise BrokerAuthError(f"Redis at {self.address} needs a password (its "
                                      f"requirepass): give --redis-password ({error})"
                                      ) from error
            raise BrokerAuthError(f"Redis at {self.address} refused the password: {error}"
                                  ) from error
        except (redis.ConnectionError, redis.TimeoutError) as error:
            raise BrokerUnreachable(f"cannot reach Redis at {self.address}: {error}") from error

    def _call(self, name: str, *args):
        """Run the Lua script of operation ``name`` (methods not overridden come here)."""
        with self._errors():
            return self._scripts[name](args=[self.prefix, *args])

    def acquire(self, owner, ttl):
        holder = self._call("acquire", owner, ttl)
        if holder:
            raise BrokerBusy(f"the coordinator is busy with another analysis "
                             f"({holder.decode()})")

    def add_ranges(self, token, ranges):
        self._call("add_ranges", token, *[f"{s}:{c}" for s, c in ranges])

    def take_results(self, token, timeout):
        key = f"{self.prefix}:results"
        with self._errors():
            first = self.redis.blpop([key], timeout=max(timeout, 0.001))
            if first is None:
                return []
            rest = self.redis.lpop(key, 100_000) or []
        return [first[1], *rest]

    def start_generation(self, token, t, n, spec, epsilon=None):
        self._call("start_generation", token, t, n, spec,
                   "" if epsilon is None else repr(float(epsilon)))

    def requeue_lost(self, token, lease_seconds):
        return [_range(r) for r in self._call("requeue_lost", token, lease_seconds)]

    def status(self, per_worker=True):
        p = self.prefix
        pipe = self.redis.pipeline()
        pipe.hgetall(f"{p}:gen")
        pipe.hgetall(f"{p}:counters")
        pipe.hlen(f"{p}:workers")
        pipe.hgetall(f"{p}:threads")
        pipe.llen(f"{p}:queue")
        pipe.get(f"{p}:owner")
        pipe.exists(f"{p}:stop")
        if per_worker:
            pipe.hgetall(f"{p}:worker-evaluations")
            pipe.hgetall(f"{p}:worker-info")
            pipe.hgetall(f"{p}:worker-since")
            pipe.time()
            pipe.hkeys(f"{p}:workers")
        with self._errors():
            gen, counters, workers, threads, queued, owner, stop, *detail = pipe.execute()
        gen = {k.decode(): v.decode() for k, v in gen.items()}
        threads = {int(k): int(v) for k, v in threads.items() if int(v) > 0}
        unregistered = max(workers - sum(threads.values()), 0)  # info lost: one slot each
        status = {"workers": workers,
                  "slots": sum(k * v for k, v in threads.items()) + unregistered,
                  "threads": max([*threads, 1 if unregistered else 0]),
                  "evaluations": int(counters.get(b"evaluations", 0)),
                  "acceptances": int(counters.get(b"acceptances", 0)),
                  "failures": int(counters.get(b"failures", 0)),
                  "n": int(gen["n"]) if "n" in gen else None,
                  "t": int(gen["t"]) if "t" in gen else None,
                  "epsilon": float(gen["epsilon"]) if gen.get("epsilon") else None,
                  "running": "token" in gen, "owner": owner.decode() if owner else None,
                  "stop": bool(stop), "queued": queued}
        if per_worker:
            evaluations, info, since, (seconds, micros), names = detail
            now = seconds + micros / 1e6
            pipe = self.redis.pipeline()
            for name in names:
                pipe.hlen(f"{p}:lease:{name.decode()}")
            status["per_worker"] = {k.decode(): int(v) for k, v in evaluations.items()}
            status["worker_info"] = {
                k.decode(): {**json.loads(v), "age": now - float(since.get(k, now))}
                for k, v in info.items()}
            with self._errors():
                status["leased"] = sum(pipe.execute()) if names else 0
        return status

    def request_stop(self):
        self._call("request_stop")

    def register(self, worker, info):
        threads = max(int(info.get("threads", 1)), 1)
        self._call("register", worker, threads, json.dumps(info))

    def _heartbeat(self, worker) -> tuple[dict, bytes]:
        token, t, stop, registered, event = self._call("heartbeat", worker)
        return ({"token": token.decode() if token else None, "t": int(t) if t else None,
                 "stop": bool(stop), "registered": bool(registered)}, event)

    def heartbeat(self, worker):
        return self._heartbeat(worker)[0]

    def _block(self, kind: str, since: bytes, timeout: float) -> None:
        """Wait up to ``timeout`` s for an event after ``since`` on the ``kind`` stream."""
        with self._errors():
            self.redis.xread({f"{self.prefix}:{kind}-events": since},
                             block=max(int(timeout * 1000), 1))  # 0 would block forever

    def watch(self, worker, token, stop, timeout):
        beat, event = self._heartbeat(worker)
        if timeout > 0 and beat["token"] == token and beat["stop"] == bool(stop):
            self._block("gen", event, timeout)
            beat, _ = self._heartbeat(worker)
        return beat

    def claim_many(self, worker, token, count, timeout=0.0):
        running, event, *claimed = self._call("claim_many", worker, token, int(count))
        if running and not claimed and timeout > 0:
            self._block("queue", event, timeout)
            running, _, *claimed = self._call("claim_many", worker, token, int(count))
        return [_range(r) for r in claimed] if running else None

    def push_many(self, worker, token, results, claim=0):
        running, *claimed = self._call("push_many", worker, token, int(claim),
                                       *[x for result in results for x in result])
        return [_range(r) for r in claimed] if running else None

    def give_back_many(self, worker, token, ranges):
        if ranges:
            self._call("give_back_many", worker, token,
                       *[f"{s}:{c}" for s, c in sorted(ranges)])

    def spec(self, token):
        pipe = self.redis.pipeline()
        pipe.hget(f"{self.prefix}:gen", "token")
        pipe.get(f"{self.prefix}:spec")
        with self._errors():
            current, data = pipe.execute()
        return data if current is not None and current.decode() == token else None

    def claim(self, worker, token):
        claimed = self._call("claim", worker, token)
        return _range(claimed) if claimed else None

    def push(self, worker, token, start, count, accepted, result, failed=0):
        return bool(self._call("push", worker, token, start, count, accepted, result, failed))

    def push_and_claim(self, worker, token, start, count, accepted, result, failed=0):
        claimed = self._call("push_and_claim", worker, token, start, count, accepted, result,
                             failed)
        return _range(claimed) if claimed else None

    def close(self):
        self.redis.close()
