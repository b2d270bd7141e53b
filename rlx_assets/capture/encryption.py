"""Golden samples encrypted at rest: AES-256-GCM over the gzip bytes, in authenticated chunks.

A file is one or more segments (a capture restarted the same day appends one, as gzip appends a
member):

    segment = MAGIC (8 bytes) + segment id (16 random bytes) + chunk ... + final chunk
    chunk   = ciphertext length (4 bytes, big-endian) + flags (1 byte) + nonce (12 bytes)
              + ciphertext (AES-GCM, its 16-byte tag included)

The associated data of each chunk binds the segment id, the chunk's index and its `final` flag, so
chunks cannot be reordered, moved to another segment, or dropped at the end unnoticed. Chunks are
written at each flush, so a capture killed mid-write leaves every chunk before the break readable
(the reader returns them and the gzip layer reports the file as truncated, as for a plain file).

Why chunks and not one GCM stream: a day of a busy symbol is hundreds of megabytes, written over
24 hours; one GCM message could only be checked at its very end and not at all if cut short.
`cryptography`'s AESGCM does the cryptography; this module only frames it.
"""

from __future__ import annotations

import os
import struct
from typing import BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

MAGIC = b"RLXGCM1\n"
KEY_BYTES = 32  # AES-256
_SEGMENT_ID_BYTES = 16
_NONCE_BYTES = 12
_TAG_BYTES = 16
_HEADER = struct.Struct(">IB")  # ciphertext length, flags
_FINAL = 1
CHUNK_BYTES = 1 << 20  # plaintext per chunk at most (a flush may cut one shorter)


class GoldenKeyError(ValueError):
    """A golden sample cannot be decrypted: no key, a malformed key, or not the key it was
    written with. Messages never include the key."""


def is_encrypted(data: bytes) -> bool:
    return data[: len(MAGIC)] == MAGIC


def parse_key(text: str | None, setting: str = "RLX_GOLDEN_KEY") -> bytes | None:
    """The 32-byte key from its 64-hex-digit form, None when unset."""
    if text is None or not text.strip():
        return None
    try:
        key = bytes.fromhex(text.strip())
    except ValueError:
        key = b""
    if len(key) != KEY_BYTES:
        # The value itself stays out of the message: it is a secret even when malformed.
        raise GoldenKeyError(
            f"{setting} must be {KEY_BYTES * 2} hexadecimal digits (a 256-bit key), e.g. from "
            '`python -c "import secrets; print(secrets.token_hex(32))"`'
        )
    return key


def _associated_data(segment_id: bytes, index: int, flags: int) -> bytes:
    return MAGIC + segment_id + struct.pack(">QB", index, flags)


class EncryptingWriter:
    """A binary file object that encrypts what is written to `raw` in chunks (one segment).

    `flush()` seals the buffered bytes as a chunk (call it as often as the data must be durable);
    `close()` writes the final chunk and flushes `raw`, but leaves `raw` open."""

    def __init__(self, raw: BinaryIO, key: bytes, chunk_bytes: int = CHUNK_BYTES) -> None:
        self._raw = raw
        self._aead = AESGCM(key)
        self._chunk_bytes = chunk_bytes
        self._segment_id = os.urandom(_SEGMENT_ID_BYTES)
        self._index = 0
        self._buffer = bytearray()
        self._closed = False
        raw.write(MAGIC + self._segment_id)

    def write(self, data: bytes) -> int:
        if self._closed:
            raise ValueError("write to a closed EncryptingWriter")
        self._buffer += data
        while len(self._buffer) >= self._chunk_bytes:
            self._seal(bytes(self._buffer[: self._chunk_bytes]), 0)
            del self._buffer[: self._chunk_bytes]
        return len(data)

    def flush(self) -> None:
        if self._buffer and not self._closed:
            self._seal(bytes(self._buffer), 0)
            self._buffer.clear()
        self._raw.flush()

    def close(self) -> None:
        if self._closed:
            return
        self._seal(bytes(self._buffer), _FINAL)
        self._buffer.clear()
        self._closed = True
        self._raw.flush()

    @property
    def closed(self) -> bool:
        return self._closed

    def _seal(self, plaintext: bytes, flags: int) -> None:
        nonce = os.urandom(_NONCE_BYTES)
        associated = _associated_data(self._segment_id, self._index, flags)
        ciphertext = self._aead.encrypt(nonce, plaintext, associated)
        self._raw.write(_HEADER.pack(len(ciphertext), flags) + nonce + ciphertext)
        self._index += 1


def decrypt(data: bytes, key: bytes | None, name: str = "golden sample") -> bytes:
    """The plaintext of an encrypted file: every authenticated chunk, in order. A file cut short
    returns the chunks before the cut; a chunk that fails authentication is an error (the first
    one: the wrong key; a later one: the file was altered)."""
    if key is None:
        raise GoldenKeyError(
            f"{name} is encrypted: set RLX_GOLDEN_KEY to the key it was written with"
        )
    aead = AESGCM(key)
    plaintext = bytearray()
    position = 0
    chunks = 0
    while position < len(data):
        if data[position : position + len(MAGIC)] != MAGIC:
            raise GoldenKeyError(f"{name}: not an encrypted golden sample at byte {position}")
        position += len(MAGIC)
        segment_id = data[position : position + _SEGMENT_ID_BYTES]
        position += _SEGMENT_ID_BYTES
        index = 0
        while True:
            header_end = position + _HEADER.size + _NONCE_BYTES
            if header_end > len(data):
                return bytes(plaintext)  # cut short inside a chunk header: keep what came before
            length, flags = _HEADER.unpack_from(data, position)
            nonce = data[position + _HEADER.size : header_end]
            if length < _TAG_BYTES or header_end + length > len(data):
                return bytes(plaintext)  # cut short inside a chunk
            ciphertext = data[header_end : header_end + length]
            try:
                plaintext += aead.decrypt(
                    nonce, ciphertext, _associated_data(segment_id, index, flags)
                )
            except InvalidTag:
                if index == 0:
                    where = f" (the part from byte {position})" if chunks else ""
                    raise GoldenKeyError(
                        f"{name}{where}: cannot decrypt with RLX_GOLDEN_KEY: not the key it was "
                        "written with, or the file was altered"
                    ) from None
                raise GoldenKeyError(
                    f"{name}: chunk at byte {position} fails authentication: the file was altered"
                ) from None
            position = header_end + length
            index += 1
            chunks += 1
            if flags & _FINAL:
                break
    return bytes(plaintext)
