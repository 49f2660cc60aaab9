"""`alveare serve`'s checks before it listens: a bad model file or a busy port is one line and a
non-zero exit, not a server that answers 503 forever or a traceback after "Listening on"."""

from __future__ import annotations

import errno
import socket

from appliance.core.errors import ConfigError

GGUF_MAGIC = b"GGUF"


def check_model(path: str) -> None:
    """The model file exists, can be read, and is a GGUF file."""
    try:
        with open(path, "rb") as f:
            magic = f.read(len(GGUF_MAGIC))
    except FileNotFoundError:
        raise ConfigError(f"model file not found: {path}") from None
    except IsADirectoryError:
        raise ConfigError(f"the model path is a directory, not a GGUF file: {path}") from None
    except OSError as exc:
        raise ConfigError(f"cannot read the model file {path}: {exc.strerror or exc}") from None
    if magic != GGUF_MAGIC:
        raise ConfigError(f"{path} is not a GGUF model file (it does not start with the GGUF signature)")


def bind(host: str, port: int) -> socket.socket:
    """The listening socket, bound before anything is printed; uvicorn serves on it."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except socket.gaierror as exc:
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does: restart over TIME_WAIT
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        hint = "; is another server running? Pick another with --port" if exc.errno == errno.EADDRINUSE else ""
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror}{hint}") from None
    return sock
