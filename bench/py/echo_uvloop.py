# SPDX-License-Identifier: MIT
"""echo_uvloop — the Python side of bench/echo_bench.sh: a TCP echo server
with asyncio streams on uvloop, written the way the asyncio documentation
writes one (asyncio.start_server, reader.read, writer.write, drain).

    /usr/bin/python3 bench/py/echo_uvloop.py [--port N] [--loop uvloop|asyncio]

Listens on 127.0.0.1 (port 0 picks a free one), prints
"listening on 127.0.0.1:PORT" (flushed), and runs until SIGTERM or SIGINT.
Raw bytes are echoed, like examples/echo_server.c and bench/epoll_echo.c.
"""
import argparse
import asyncio
import signal


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


async def main(port: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    server = await asyncio.start_server(handle, "127.0.0.1", port)
    async with server:
        print(f"listening on 127.0.0.1:{server.sockets[0].getsockname()[1]}", flush=True)
        await stop.wait()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=8000)
    ap.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop")
    args = ap.parse_args()
    if args.loop == "uvloop":
        import uvloop
        uvloop.install()
    asyncio.run(main(args.port))
