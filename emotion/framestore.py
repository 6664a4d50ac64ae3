"""Where raw frame bytes wait for inference — never the database or media storage.

Redis (``REDIS_URL`` set): one key per frame with a TTL, so even a frame whose task is lost
expires by itself. Embedded default: an in-process dict with the same TTL semantics. Frames
are deleted as soon as their reading is stored.

The Redis store also says how many frames wait for inference across every server process
(``pending``) and how fast the workers can analyse them (``analysed_rate``): what the stream
sockets' credit is granted from (``emotion.admission``).
"""

from __future__ import annotations

import threading
import time

from django.conf import settings

PREFIX = "affect:frame"
#: sorted set: id of each frame held for inference → when it was put (epoch seconds)
PENDING_KEY = "affect:pending"
#: per-second hashes: frames the workers finished (analysed or settled otherwise), and the
#: seconds of work that took
ANALYSED_PREFIX = "affect:analysed"
WORKERS_KEY = "affect:workers"  # sorted set: worker → when it last finished a batch


def frame_key(reading_id: int) -> str:
    return f"{PREFIX}:{reading_id}"


class MemoryFrameStore:
    def __init__(self):
        self._data: dict[str, tuple[float, bytes]] = {}
        self._lock = threading.Lock()

    def put(self, reading_id: int, data: bytes, ttl: int) -> None:
        self.put_many({reading_id: data}, ttl)

    def put_many(self, frames: dict[int, bytes], ttl: int) -> None:
        with self._lock:
            self._purge()
            for reading_id, data in frames.items():
                self._data[frame_key(reading_id)] = (time.monotonic() + ttl, data)

    def get_many(self, reading_ids) -> dict[int, bytes]:
        now = time.monotonic()
        with self._lock:
            out = {}
            for rid in reading_ids:
                item = self._data.get(frame_key(rid))
                if item and item[0] > now:
                    out[rid] = item[1]
            return out

    def delete_many(self, reading_ids) -> None:
        with self._lock:
            for rid in reading_ids:
                self._data.pop(frame_key(rid), None)

    def record_analysed(self, n: int, busy_s: float, worker: str) -> None:
        """Embedded: inference runs in this process, whose own budget bounds it."""

    def keys(self) -> list[str]:
        with self._lock:
            self._purge()
            return list(self._data)

    def _purge(self) -> None:
        now = time.monotonic()
        for k in [k for k, (exp, _) in self._data.items() if exp <= now]:
            del self._data[k]


class RedisFrameStore:
    def __init__(self, url: str):
        import redis

        self.client = redis.Redis.from_url(url)

    def put(self, reading_id: int, data: bytes, ttl: int) -> None:
        self.put_many({reading_id: data}, ttl)

    def put_many(self, frames: dict[int, bytes], ttl: int) -> None:
        """Hold each reading's bytes for ``ttl`` seconds: one round trip for them all."""
        if not frames:
            return
        now = time.time()
        pipe = self.client.pipeline(transaction=False)
        for reading_id, data in frames.items():
            pipe.set(frame_key(reading_id), data, ex=ttl)
        pipe.zadd(PENDING_KEY, {str(reading_id): now for reading_id in frames})
        pipe.execute()

    def get_many(self, reading_ids) -> dict[int, bytes]:
        ids = list(reading_ids)
        if not ids:
            return {}
        values = self.client.mget([frame_key(r) for r in ids])
        return {rid: v for rid, v in zip(ids, values, strict=True) if v is not None}

    def delete_many(self, reading_ids) -> None:
        ids = list(reading_ids)
        if ids:
            pipe = self.client.pipeline(transaction=False)
            pipe.delete(*[frame_key(r) for r in ids])
            pipe.zrem(PENDING_KEY, *[str(r) for r in ids])
            pipe.execute()

    def pending(self, within_s: float) -> int:
        """Frames put in the last ``within_s`` seconds and not deleted yet, from every process.
        Older entries are left out: their frames were lost with a worker (the re-queue's
        business) or expired, and they are trimmed once past the frames' TTL."""
        now = time.time()
        pipe = self.client.pipeline(transaction=False)
        pipe.zremrangebyscore(PENDING_KEY, "-inf", now - settings.FRAME_TTL_SECONDS)
        pipe.zcount(PENDING_KEY, now - within_s, "+inf")
        return int(pipe.execute()[1])

    def record_analysed(self, n: int, busy_s: float, worker: str) -> None:
        """A worker finished ``n`` frames in ``busy_s`` seconds of work."""
        now = time.time()
        key = f"{ANALYSED_PREFIX}:{int(now)}"
        pipe = self.client.pipeline(transaction=False)
        pipe.hincrby(key, "frames", n)
        pipe.hincrbyfloat(key, "busy", busy_s)
        pipe.expire(key, 120)
        pipe.zadd(WORKERS_KEY, {worker: now})
        pipe.zremrangebyscore(WORKERS_KEY, "-inf", now - 3600)
        pipe.execute()

    def analysed_rate(self, window_s: int) -> float | None:
        """Frames per second the workers can analyse together, from the last ``window_s``
        whole seconds: frames per second of work of one, times the workers that had work.
        None when none had any (nothing measured)."""
        now = int(time.time())
        pipe = self.client.pipeline(transaction=False)
        for t in range(now - window_s, now):
            pipe.hmget(f"{ANALYSED_PREFIX}:{t}", "frames", "busy")
        pipe.zcount(WORKERS_KEY, now - window_s, "+inf")
        *per_second, workers = pipe.execute()
        frames = sum(int(f) for f, _ in per_second if f)
        busy = sum(float(b) for _, b in per_second if b)
        if not frames or busy <= 0:
            return None
        return frames / busy * max(1, workers)

    def keys(self) -> list[str]:
        return [k.decode() for k in self.client.scan_iter(f"{PREFIX}:*")]


_stores: dict[str, object] = {}
_memory = MemoryFrameStore()


def get_frame_store():
    url = settings.REDIS_URL
    if not url:
        return _memory
    if url not in _stores:
        _stores[url] = RedisFrameStore(url)
    return _stores[url]
