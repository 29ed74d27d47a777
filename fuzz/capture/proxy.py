#!/usr/bin/env python3
"""A recording TCP proxy for Kafka traffic: capture real clients' requests as fuzz seeds.

    proxy.py LISTEN_PORT UPSTREAM_PORT OUT_FILE

Forwards every connection to 127.0.0.1:UPSTREAM_PORT both ways. Each complete request frame a
client sends (size prefix included) is appended to a list in arrival order, whatever connection it
came on; on SIGTERM the list is written to OUT_FILE as one byte stream of size-prefixed frames, the
input format of the `kafka_request` fuzz target. Point clients at LISTEN_PORT and run the agent with
`--advertised-listen 127.0.0.1:LISTEN_PORT` so that they come back through the proxy after
bootstrapping.
"""
import asyncio
import signal
import struct
import sys

frames = []


async def client_to_agent(reader, writer):
    buffer = b""
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            writer.write(data)
            await writer.drain()
            buffer += data
            while len(buffer) >= 4:
                (size,) = struct.unpack(">i", buffer[:4])
                if size < 0 or len(buffer) < 4 + size:
                    break
                frames.append(buffer[: 4 + size])
                buffer = buffer[4 + size :]
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        writer.close()


async def agent_to_client(reader, writer):
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
        writer.close()


async def main():
    listen_port, upstream_port, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]

    async def handle(client_reader, client_writer):
        try:
            agent_reader, agent_writer = await asyncio.open_connection("127.0.0.1", upstream_port)
        except OSError:
            client_writer.close()
            return
        await asyncio.gather(
            client_to_agent(client_reader, agent_writer),
            agent_to_client(agent_reader, client_writer),
        )

    server = await asyncio.start_server(handle, "127.0.0.1", listen_port)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    print("listening", flush=True)
    await stop.wait()
    server.close()
    with open(out, "wb") as file:
        for frame in frames:
            file.write(frame)


asyncio.run(main())
