#!/usr/bin/env python3
"""A small round-robin TCP load balancer for trying hookflow with several
nodes on one machine: each new connection goes to the next backend; a
backend that refuses the connection is skipped (the next one is tried), so
a node that is down or restarting costs nothing but a retry.

    balance.py LISTEN_ADDR BACKEND_ADDR [BACKEND_ADDR ...]
    balance.py 127.0.0.1:8080 127.0.0.1:8081 127.0.0.1:8082 127.0.0.1:8083

Standard library only. For production put a real load balancer in front
(HAProxy, nginx, a cloud one): any of them works, as every node serves
every request.
"""
import asyncio
import itertools
import sys


def split(addr):
    host, _, port = addr.rpartition(":")
    return host, int(port)


async def pipe(reader, writer):
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        try:
            writer.close()
        except Exception:
            pass


async def main():
    listen = split(sys.argv[1])
    backends = [split(a) for a in sys.argv[2:]]
    turn = itertools.cycle(range(len(backends)))

    async def handle(client_reader, client_writer):
        for _ in range(len(backends)):
            host, port = backends[next(turn)]
            try:
                up_reader, up_writer = await asyncio.open_connection(host, port)
            except OSError:
                continue
            await asyncio.gather(pipe(client_reader, up_writer), pipe(up_reader, client_writer))
            return
        client_writer.close()

    server = await asyncio.start_server(handle, *listen)
    print(f"balancing {sys.argv[1]} over {', '.join(sys.argv[2:])}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
