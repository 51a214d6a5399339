"""The control channel between swapd's owner process and one data-plane worker.

One ``AF_UNIX`` stream socket pair per worker, made by the owner before it spawns the worker (no
path, no token: only the two processes hold an end). A message is a tuple. Sends are batched:
the messages queued during one turn of the event loop leave at its end as one frame, ``u32
length · u8 fd count · pickle of the list`` (both ends are the same swapd install), in one
``send``: a burst of requests costs one pickle and one syscall per batch, not per message. A
frame may carry file descriptors (``SCM_RIGHTS``, attached to its first byte); the receiver
hands the frame's list to each of its messages in turn, and a message that takes one pops it
(what is left is closed). Both ends read and write the socket non-blocking from their own event
loop.
"""

from __future__ import annotations

import asyncio
import collections
import collections.abc
import contextlib
import logging
import os
import pickle
import socket
import struct
from collections.abc import Callable
from typing import Any

log = logging.getLogger("swapd.dataplane")

HEADER = struct.Struct("<IB")
READ_SIZE = 256 * 1024
MAX_FDS = 64  # descriptors taken from one read

Message = tuple[Any, ...]
Handler = Callable[[Message, list[int]], None]


class Channel:
    """Messages over ``sock``; ``on_message(message, fds)`` for each one received, in order;
    ``on_close()`` once, when the other end is gone (or :meth:`close` was called)."""

    def __init__(
        self, sock: socket.socket, on_message: Handler, on_close: Callable[[], None]
    ) -> None:
        sock.setblocking(False)
        self.sock = sock
        self.on_message = on_message
        self.on_close = on_close
        self.loop = asyncio.get_running_loop()
        self.closed = False
        self._in = bytearray()
        self._fds: collections.deque[int] = collections.deque()
        self._out: collections.deque[tuple[bytes, tuple[int, ...]]] = collections.deque()
        self._batch: list[Message] = []  # queued this turn of the loop
        self._batch_fds: list[int] = []
        self._flushing = False  # a flush is scheduled, or waiting for the socket to drain
        self._writer = False
        self.loop.add_reader(sock.fileno(), self._readable)

    # -- sending -------------------------------------------------------------------------
    def send(self, message: Message, fds: tuple[int, ...] = ()) -> None:
        """Queue ``message``; it leaves at the end of this turn of the loop. The channel owns
        ``fds`` from now on: it closes them once they are sent (the receiver has its own)."""
        if self.closed:
            _close_all(fds)
            return
        self._batch.append(message)
        if fds:
            self._batch_fds.extend(fds)
        if not self._flushing:
            self._flushing = True
            self.loop.call_soon(self._flush)

    def _flush(self) -> None:
        out = self._out
        if self._batch:
            body = pickle.dumps(self._batch, protocol=pickle.HIGHEST_PROTOCOL)
            fds = tuple(self._batch_fds)
            self._batch = []
            self._batch_fds = []
            out.append((HEADER.pack(len(body), len(fds)) + body, fds))
        try:
            while out:
                data, fds = out.popleft()
                if fds:
                    sent = socket.send_fds(self.sock, [data], list(fds))
                    _close_all(fds)
                else:
                    sent = self.sock.send(data)
                if sent < len(data):  # the rest without descriptors: they went with byte one
                    out.appendleft((data[sent:], ()))
                    self._wait_writable()
                    return
        except BlockingIOError:
            out.appendleft((data, fds))
            self._wait_writable()
            return
        except OSError:
            self.close()
            return
        self._flushing = False
        if self._writer:
            self._writer = False
            self.loop.remove_writer(self.sock.fileno())

    def _wait_writable(self) -> None:
        if not self._writer:
            self._writer = True
            self.loop.add_writer(self.sock.fileno(), self._flush)

    # -- receiving -----------------------------------------------------------------------
    def _readable(self) -> None:
        try:
            data, fds, _flags, _addr = socket.recv_fds(self.sock, READ_SIZE, MAX_FDS)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self.close()
            return
        self._fds.extend(fds)
        if not data:
            self.close()
            return
        buf = self._in
        buf += data
        at = 0
        while len(buf) - at >= HEADER.size:
            size, count = HEADER.unpack_from(buf, at)
            end = at + HEADER.size + size
            if len(buf) < end:
                break
            batch = pickle.loads(buf[at + HEADER.size : end])
            at = end
            taken = [self._fds.popleft() for _ in range(min(count, len(self._fds)))]
            for message in batch:
                try:
                    self.on_message(message, taken)
                except Exception:  # a bug in one handler must not end the channel
                    log.exception("control message %r failed", message[:1])
                if self.closed:
                    _close_all(taken)
                    return
            _close_all(taken)  # none of its messages took them
        del buf[:at]

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        fd = self.sock.fileno()
        if fd >= 0:
            self.loop.remove_reader(fd)
            if self._writer:
                self.loop.remove_writer(fd)
        self.sock.close()
        _close_all(self._fds)
        self._fds.clear()
        for _data, fds in self._out:
            _close_all(fds)
        self._out.clear()
        _close_all(self._batch_fds)
        self._batch_fds.clear()
        self._batch.clear()
        self.on_close()


def _close_all(fds: collections.abc.Iterable[int]) -> None:
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)
