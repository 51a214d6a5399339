"""A bare asyncio HTTP/1.1 engine for connection-level cases the echo engine cannot show.

    python tests/fakes/raw_engine.py PORT [--drop-reused] [--log FILE] [--start-delay S]

Every request gets ``200 {"pid": …, "target": "<request target as received>", "fields": […]}``
(``fields``: the names of the request's header fields, lower-case, in order; ``forwarded``: the
values of its X-Forwarded-For, X-Real-IP and Forwarded fields, each name's joined by ", ") with
``x-engine-pid``, ``server: raw-engine`` and ``date`` headers, kept alive (no
``Connection: close``).

``--drop-reused``
    a second request on a connection is dropped without an answer, as llama-server does with
    kept-alive connections after streamed responses.
``--log FILE``
    one line per request read in full (``METHOD TARGET``), appended before answering: how
    many times the engine saw a request.
``--start-delay S``
    listen only after S seconds (a slow engine start).
``POST /close``
    the engine closes its connections (this one and any kept alive), stops listening at once
    and exits 0.5 s later: an engine dying between requests.

A word in the request body chooses a misbehaviour:

``act:die``    the process exits at once without answering (an engine crashing on a prompt)
``act:hang``   no answer ever
``act:stall``  200 SSE headers and one frame, then nothing more
``act:cut``    200 SSE headers and one frame, then the process exits
``act:error``  500 with a JSON error body (pretty-printed: it spans lines)
``act:chunks`` 200 SSE: the head and two whole chunks (one with a chunk extension) in one
               write, two more and the terminating chunk in a second write 50 ms later
``act:whole``  200 SSE: the head, three whole chunks and the terminating chunk in one write
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from email.utils import formatdate

SSE_HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
)
FRAME = b'data: {"choices":[{"index":0,"delta":{"content":"half"}}]}\n\n'


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


async def main(port: int, drop_reused: bool, log: str | None, start_delay: float) -> None:
    loop = asyncio.get_running_loop()
    pid = os.getpid()

    open_writers: set[asyncio.StreamWriter] = set()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        served = False
        open_writers.add(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                body = await reader.readexactly(length)
                if served and drop_reused:
                    break
                served = True
                request_line = head.split(b"\r\n", 1)[0]
                if log:
                    with open(log, "ab") as f:  # noqa: ASYNC230 - must be on disk before exiting
                        f.write(request_line.rsplit(b" ", 1)[0] + b"\n")
                if b"act:die" in body:
                    os._exit(1)
                if b"act:hang" in body:
                    await asyncio.Event().wait()
                if b"act:stall" in body or b"act:cut" in body:
                    writer.write(SSE_HEAD + chunk(FRAME))
                    await writer.drain()
                    if b"act:cut" in body:
                        await asyncio.sleep(0.05)
                        os._exit(1)
                    await asyncio.Event().wait()
                if b"act:chunks" in body or b"act:whole" in body:
                    frames = [FRAME.replace(b"half", b"part%d" % n) for n in range(4)]
                    first = SSE_HEAD + b"%x;ext=1\r\n%s\r\n" % (len(frames[0]), frames[0])
                    if b"act:whole" in body:
                        writer.write(first + chunk(frames[1]) + chunk(frames[2]) + b"0\r\n\r\n")
                    else:
                        writer.write(first + chunk(frames[1]))
                        await writer.drain()
                        await asyncio.sleep(0.05)
                        writer.write(chunk(frames[2]) + chunk(frames[3]) + b"0\r\n\r\n")
                    await writer.drain()
                    continue
                if b"act:error" in body:
                    error = {"error": {"message": "engine exploded", "type": "server_error"}}
                    data = json.dumps(error, indent=2).encode()
                    status = b"500 Internal Server Error"
                else:
                    target = request_line.split(b" ")[1].decode("latin-1")
                    lines = [f.partition(b":") for f in head.split(b"\r\n")[1:] if f]
                    fields = [name.lower().decode() for name, _, _ in lines]
                    forwarded: dict[str, str] = {}
                    for raw, _, raw_value in lines:
                        name, value = raw.lower().decode(), raw_value.strip().decode("latin-1")
                        if name in ("x-forwarded-for", "x-real-ip", "forwarded"):
                            seen = forwarded.get(name)
                            forwarded[name] = f"{seen}, {value}" if seen else value
                    answer = {"pid": pid, "target": target, "fields": fields}
                    answer["forwarded"] = forwarded
                    data = json.dumps(answer).encode()
                    status = b"200 OK"
                writer.write(
                    b"HTTP/1.1 %s\r\ncontent-type: application/json\r\n"
                    b"server: raw-engine\r\ndate: %s\r\n"
                    b"x-engine-pid: %d\r\ncontent-length: %d\r\n\r\n%s"
                    % (status, formatdate(usegmt=True).encode(), pid, len(data), data)
                )
                await writer.drain()
                if head.startswith(b"POST /close "):
                    server.close()
                    for other in open_writers - {writer}:
                        other.close()
                    loop.call_later(0.5, os._exit, 0)
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            open_writers.discard(writer)
            writer.close()

    await asyncio.sleep(start_delay)
    server = await asyncio.start_server(handle, "127.0.0.1", port)
    print(f"raw engine listening on {port}", flush=True)
    await asyncio.Event().wait()


def _option(args: list[str], name: str) -> str | None:
    return args[args.index(name) + 1] if name in args else None


if __name__ == "__main__":
    args = sys.argv[2:]
    asyncio.run(
        main(
            int(sys.argv[1]),
            "--drop-reused" in args,
            _option(args, "--log"),
            float(_option(args, "--start-delay") or 0),
        )
    )
