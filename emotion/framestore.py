"""Where raw frame bytes wait for inference — never the database or media storage.

Redis (``REDIS_URL`` set): one key per frame with a TTL, so even a frame whose task is lost
expires by itself. Embedded default: an in-process dict with the same TTL semantics. Frames
are deleted as soon as their reading is stored.
"""

from __future__ import annotations

import threading
import time

from django.conf import settings

PREFIX = "affect:frame"


def frame_key(reading_id: int) -> str:
    return f"{PREFIX}:{reading_id}"


class MemoryFrameStore:
    def __init__(self):
        self._data: dict[str, tuple[float, bytes]] = {}
        self._lock = threading.Lock()

    def put(self, reading_id: int, data: bytes, ttl: int) -> None:
        with self._lock:
            self._purge()
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
        self.client.set(frame_key(reading_id), data, ex=ttl)

    def get_many(self, reading_ids) -> dict[int, bytes]:
        ids = list(reading_ids)
        if not ids:
            return {}
        values = self.client.mget([frame_key(r) for r in ids])
        return {rid: v for rid, v in zip(ids, values, strict=True) if v is not None}

    def delete_many(self, reading_ids) -> None:
        ids = list(reading_ids)
        if ids:
            self.client.delete(*[frame_key(r) for r in ids])

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
