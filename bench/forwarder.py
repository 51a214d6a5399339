"""A minimal pure-ASGI forwarder used by bench/upstream_clients.py (one upstream client each).

python bench/forwarder.py aiohttp|httpx|httpx-aiohttp UPSTREAM_URL PORT
"""
# mypy: ignore-errors

import sys

import uvicorn

client, upstream, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
TE = b"transfer-encoding"


async def read_body(receive):
    chunks = []
    while True:
        m = await receive()
        chunks.append(m.get("body", b""))
        if not m.get("more_body"):
            return b"".join(chunks)


if client == "aiohttp":
    import aiohttp

    session = None

    async def app(scope, receive, send):
        global session
        if scope["type"] != "http":
            return
        if session is None:
            connector = aiohttp.TCPConnector(limit=0)
            session = aiohttp.ClientSession(connector=connector, auto_decompress=False)
        body = await read_body(receive)
        async with session.request(
            scope["method"],
            upstream + scope["path"],
            data=body,
            headers={"content-type": "application/json"},
        ) as r:
            await send(
                {
                    "type": "http.response.start",
                    "status": r.status,
                    "headers": [(k.lower(), v) for k, v in r.raw_headers if k.lower() != TE],
                }
            )
            async for chunk in r.content.iter_any():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
else:
    import httpx

    kw = {}
    if client == "httpx-aiohttp":
        from httpx_aiohttp import AiohttpTransport

        kw["transport"] = AiohttpTransport()
    limits = httpx.Limits(max_connections=1000, max_keepalive_connections=1000)
    http = None

    async def app(scope, receive, send):
        global http
        if scope["type"] != "http":
            return
        if http is None:
            http = httpx.AsyncClient(limits=limits, timeout=None, **kw)
        body = await read_body(receive)
        req = http.build_request(
            scope["method"],
            upstream + scope["path"],
            content=body,
            headers={"content-type": "application/json"},
        )
        r = await http.send(req, stream=True)
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": r.status_code,
                    "headers": [(k, v) for k, v in r.headers.raw if k.lower() != TE],
                }
            )
            async for chunk in r.aiter_raw():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        finally:
            await r.aclose()


uvicorn.run(
    app,
    host="127.0.0.1",
    port=port,
    loop="uvloop",
    http="httptools",
    log_level="warning",
    access_log=False,
    lifespan="off",
)
