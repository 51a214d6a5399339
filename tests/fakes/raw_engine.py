"""A bare asyncio HTTP/1.1 engine for connection-level cases the echo engine cannot show.

    python tests/fakes/raw_engine.py PORT [--drop-reused]

Every request gets ``200 {"pid": …}`` with an ``x-engine-pid`` header, kept alive (no
``Connection: close``).

``--drop-reused``
    a second request on a connection is dropped without an answer, as llama-server does with
    kept-alive connections after streamed responses.
``POST /close``
    the engine closes the connection, stops listening at once and exits 0.5 s later: an engine
    dying between requests.
"""

from __future__ import annotations

import asyncio
import os
import sys


async def main(port: int, drop_reused: bool) -> None:
    loop = asyncio.get_running_loop()
    pid = os.getpid()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        served = False
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                await reader.readexactly(length)
                if served and drop_reused:
                    break
                served = True
                body = b'{"pid": %d}' % pid
                writer.write(
                    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                    b"x-engine-pid: %d\r\ncontent-length: %d\r\n\r\n%s" % (pid, len(body), body)
                )
                await writer.drain()
                if head.startswith(b"POST /close "):
                    server.close()
                    loop.call_later(0.5, os._exit, 0)
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", port)
    print(f"raw engine listening on {port}", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), "--drop-reused" in sys.argv[2:]))
